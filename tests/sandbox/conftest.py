import pytest

from outputs.sandbox import PartnerSandbox, SandboxClient


@pytest.fixture(scope="session")
def sandbox():
    with PartnerSandbox() as running:
        yield running


@pytest.fixture
def client(sandbox):
    control = SandboxClient(sandbox.url)
    control.reset()
    yield control
    control.close()


@pytest.fixture
def demo(client):
    """The demo accounts (see ``manage.py partner_sandbox --seed-demo``), on a freshly reset sandbox."""
    return client.seed_demo()
