import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

# A shell's background job starts with SIGINT ignored, and children inherit that: restore Python's handler so
# the Ctrl-C tests' subprocesses see KeyboardInterrupt however the suite was launched.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Triton kernels run on CPU tensors under its interpreter; set before anything imports triton.
if shutil.which("nvidia-smi") is None:
    os.environ.setdefault("TRITON_INTERPRET", "1")

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "replab tests",
    "GIT_AUTHOR_EMAIL": "tests@replab.invalid",
    "GIT_COMMITTER_NAME": "replab tests",
    "GIT_COMMITTER_EMAIL": "tests@replab.invalid",
}


def run(cmd, cwd, check=True, **kw):
    """Run a command with the venv's tools first on PATH; return the CompletedProcess."""
    env = {**os.environ, **GIT_IDENTITY, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **kw.pop("env", {})}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def copy_project(dest: Path, with_data: bool) -> Path:
    """The working tree as a fresh git repository: tracked and untracked-but-not-ignored files, one commit."""
    files = (
        subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True
        )
        .stdout.decode()
        .split("\0")
    )
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    if with_data:
        if not (ROOT / "data").is_dir():
            pytest.skip("data/ is not built: run `make data` first")
        shutil.copytree(ROOT / "data", dest / "data", copy_function=os.link)
    run(["git", "init", "-q"], dest)
    run(["git", "add", "-A"], dest)
    run(["git", "commit", "-qm", "copy"], dest)
    return dest


def tiny_copy(dest: Path) -> Path:
    """A fresh copy of the project with data/ (hard links) at the tiny profile, committed."""
    project = copy_project(dest, with_data=True)
    params = project / "params.yaml"
    params.write_text(params.read_text().replace("profile: laptop", "profile: tiny", 1))
    run(["git", "commit", "-qam", "tiny profile"], project)
    return project


# -- an OpenSSH server for the target tests and the SSH SuperNode test (tests/targets/hosts.py) -----------------
@pytest.fixture(scope="session")
def user_key(tmp_path_factory):
    from .targets.hosts import keygen

    return keygen(tmp_path_factory.mktemp("keys") / "id_ed25519")


@pytest.fixture(scope="session")
def loopback_host(tmp_path_factory, user_key):
    """One sshd on a loopback port for the whole session; stopped at the end, also after failures."""
    from .targets.hosts import SshHost, require_sshd

    require_sshd()
    host = SshHost(tmp_path_factory.mktemp("sshd"), user_key).start()
    yield host
    host.stop()
