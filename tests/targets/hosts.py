"""Real OpenSSH servers for the target tests: on a loopback port, or inside network namespaces acting as
separate hosts on a bridge (with tbf-shaped links). Generated host and user keys; every server and
namespace is removed on exit, also when a test fails."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from replab.edge.pipeline import free_port
from replab.targets.config import SshTarget

SSHD = "/usr/sbin/sshd"


def require_sshd() -> None:
    if os.geteuid() != 0:
        pytest.skip("sshd test hosts need root (CI runs as root)")
    if not Path(SSHD).exists():
        pytest.fail("openssh-server is not installed: apt-get install -y openssh-server (.ci/run does)")


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


class SshHost:
    """One sshd accepting ``user_key`` for root, its host key written to its own known_hosts file."""

    def __init__(self, folder: Path, user_key: Path, address: str = "127.0.0.1", netns: str | None = None):
        self.folder, self.user_key, self.address, self.netns = folder, user_key, address, netns
        self.port = free_port() if netns is None else 2222
        self.proc: subprocess.Popen | None = None
        self.known_hosts = folder / "known_hosts"

    def start(self) -> SshHost:
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege-separation folder
        f = self.folder
        f.mkdir(parents=True, exist_ok=True)
        host_key = keygen(f / "host_key")
        shutil.copy(self.user_key.with_suffix(".pub"), f / "authorized_keys")
        (f / "sshd_config").write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    f"ListenAddress {self.address}",
                    f"HostKey {host_key}",
                    f"AuthorizedKeysFile {f / 'authorized_keys'}",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "StrictModes no",
                    "PermitRootLogin prohibit-password",
                    "Subsystem sftp internal-sftp",  # DVC's ssh remote speaks SFTP
                    f"PidFile {f / 'sshd.pid'}",
                    "",
                ]
            )
        )
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        log = open(f / "sshd.log", "w")  # noqa: SIM115 - kept for the server's life
        # Its own process group, signalled as a whole on stop (per-connection sshd processes start their own
        # sessions and end with their connections).
        self.proc = subprocess.Popen(
            [*prefix, SSHD, "-D", "-e", "-f", str(f / "sshd_config")], stderr=log, start_new_session=True
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            scan = subprocess.run(
                ["ssh-keyscan", "-T", "2", "-t", "ed25519", "-p", str(self.port), self.address],
                capture_output=True,
                text=True,
            )
            if scan.stdout.strip():
                self.known_hosts.write_text(scan.stdout)
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"sshd did not start: {(f / 'sshd.log').read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=5)
                break
            except subprocess.TimeoutExpired:
                continue

    def target(self, workdir: Path, **overrides) -> SshTarget:
        fields = dict(
            kind="ssh",
            host=self.address,
            port=self.port,
            user="root",
            identity_file=str(self.user_key),
            known_hosts=str(self.known_hosts),
            python=sys.executable,
            workdir=str(workdir),
            connect_timeout_s=5,
        )
        return SshTarget.model_validate({**fields, **overrides}, strict=False)

    def yaml_entry(self, workdir: Path, **overrides) -> dict:
        return self.target(workdir, **overrides).model_dump(exclude_defaults=False)


def _ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, capture_output=True)


@contextlib.contextmanager
def namespace_hosts(folder: Path, user_key: Path, n: int, rate_mbit: float = 100):
    """``n`` sshd hosts, each in its own network namespace on a bridge with this machine (192.168.77.1):
    host i at 192.168.77.(10 + i), every veth end shaped by tbf to ``rate_mbit``."""
    tag = f"{os.getpid() % 100000}"
    bridge = f"rtb{tag}"
    made_ns: list[str] = []
    links: list[str] = []
    hosts: list[SshHost] = []
    try:
        _ip("link", "add", bridge, "type", "bridge")
        links.append(bridge)
        _ip("addr", "add", "192.168.77.1/24", "dev", bridge)
        _ip("link", "set", bridge, "up")
        for i in range(n):
            ns, outer, inner = f"rt{tag}h{i}", f"rt{tag}a{i}", f"rt{tag}b{i}"
            _ip("netns", "add", ns)
            made_ns.append(ns)
            _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            links.append(outer)
            _ip("link", "set", inner, "netns", ns)
            _ip("link", "set", outer, "master", bridge)
            _ip("link", "set", outer, "up")
            _ip("-n", ns, "addr", "add", f"192.168.77.{10 + i}/24", "dev", inner)
            _ip("-n", ns, "link", "set", inner, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            tbf = ["tbf", "rate", f"{rate_mbit:g}mbit", "burst", "32kb", "limit", "8mb"]
            subprocess.run(["tc", "qdisc", "add", "dev", outer, "root", *tbf], check=True, capture_output=True)
            subprocess.run(
                ["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", inner, "root", *tbf],
                check=True,
                capture_output=True,
            )
            host = SshHost(folder / f"host{i}", user_key, address=f"192.168.77.{10 + i}", netns=ns)
            host.gloo_ifname = inner
            hosts.append(host.start())
        yield hosts
    finally:
        for h in hosts:
            h.stop()
        for ns in made_ns:
            # Anything still running in a namespace (a rank) goes with it.
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), 9)
            _ip("netns", "del", ns, check=False)
        for link in links:
            _ip("link", "del", link, check=False)
