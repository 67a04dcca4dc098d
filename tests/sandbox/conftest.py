import pytest

from outputs.sandbox import PartnerSandbox, SandboxClient


@pytest.fixture(scope="session")
def sandbox_server():
    """A partner sandbox of these tests' own (`sandbox`, in the root conftest, is a control client of another)."""
    with PartnerSandbox() as running:
        yield running


@pytest.fixture
def client(sandbox_server):
    control = SandboxClient(sandbox_server.url)
    control.reset()
    yield control
    control.close()


@pytest.fixture
def demo(client):
    """The demo accounts (see ``manage.py partner_sandbox --seed-demo``), on a freshly reset sandbox."""
    return client.seed_demo()
