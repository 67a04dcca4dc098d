import pytest


@pytest.fixture
def client(sandbox):
    """The sandbox's control client, as the emulator tests name it (nothing here drives Django's test client)."""
    return sandbox


@pytest.fixture
def demo(sandbox):
    """The demo accounts (see ``manage.py partner_sandbox --seed-demo``), on a freshly reset sandbox."""
    return sandbox.seed_demo()
