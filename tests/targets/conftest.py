import pytest

from .hosts import SshHost, keygen, require_sshd


@pytest.fixture(scope="session")
def user_key(tmp_path_factory):
    return keygen(tmp_path_factory.mktemp("keys") / "id_ed25519")


@pytest.fixture(scope="session")
def loopback_host(tmp_path_factory, user_key):
    """One sshd on a loopback port for the whole session; stopped at the end, also after failures."""
    require_sshd()
    host = SshHost(tmp_path_factory.mktemp("sshd"), user_key).start()
    yield host
    host.stop()
