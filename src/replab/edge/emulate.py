"""Emulated heterogeneous edge devices on one Linux machine: each device a network namespace on a shared
bridge, its link shaped with ``tc tbf``, its CPU share and memory capped with cgroup v1.

Needs root, iproute2 and cgroup v1 (cpu, memory). Without them :class:`EmulatedCluster` falls back to plain
loopback processes and says so (``emulated`` is False). Everything it creates is removed on exit, on an
exception and on SIGINT/SIGTERM. netem is missing from the kernels this was built on, so links get a rate
limit but no added propagation delay.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
CPU_PERIOD_US = 10_000  # short periods spread throttling evenly over ms-scale layers (less noise)
# Joins the cgroups given as the first two arguments, then runs the rest (argv, no shell string from params).
_JOIN = 'echo $$ > "$1" && echo $$ > "$2" && shift 2 && exec "$@"'


@dataclass(frozen=True)
class EmulatedDevice:
    name: str
    cpu_share: float  # cores (0.25 = a quarter of one core)
    memory_mb: int
    bandwidth_mbit: float

    def __post_init__(self):
        if not 0 < self.cpu_share <= (os.cpu_count() or 1):
            raise ValueError(f"{self.name}: cpu_share must be in (0, {os.cpu_count()}], got {self.cpu_share}")
        if self.memory_mb <= 0 or self.bandwidth_mbit <= 0:
            raise ValueError(f"{self.name}: memory_mb and bandwidth_mbit must be positive")


def emulation_available() -> tuple[bool, str]:
    """Whether namespaces, tc and cgroup v1 can be used here, and if not, why."""
    if os.geteuid() != 0:
        return False, "not root"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return False, f"`{tool}` not found (Debian: iproute2)"
    for ctl in ("cpu", "memory"):
        if not (CGROUP_ROOT / ctl / "tasks").exists():
            return False, f"cgroup v1 controller {ctl!r} not mounted at {CGROUP_ROOT / ctl}"
    return True, ""


def _run(*argv: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")


class EmulatedCluster:
    """``with EmulatedCluster(devices) as cluster:`` then run rank ``i`` as ``cluster.command(i) + argv`` with
    ``cluster.env(i)``; rank 0's address is ``cluster.master_addr``."""

    def __init__(self, devices: list[EmulatedDevice], subnet: str = "10.231.0", require: bool = False):
        if not 1 <= len(devices) <= 200:
            raise ValueError("between 1 and 200 devices")
        self.devices = list(devices)
        self.subnet = subnet
        self.prefix = f"rl{os.getpid() % 100000}"
        ok, why = emulation_available()
        if not ok and require:
            raise RuntimeError(f"device emulation unavailable: {why}")
        self.emulated, self.reason = ok, why
        self._created: list[tuple[str, str]] = []  # ("netns", name) / ("cgroup", path), in creation order
        self._old_handlers: dict[int, object] = {}

    # -- names --------------------------------------------------------------------------------------
    def namespace(self, i: int) -> str:
        return f"{self.prefix}-d{i}"

    @property
    def switch(self) -> str:
        return f"{self.prefix}-sw"

    def address(self, i: int) -> str:
        return f"{self.subnet}.{i + 1}" if self.emulated else "127.0.0.1"

    @property
    def master_addr(self) -> str:
        return self.address(0)

    def _cgroup(self, ctl: str, i: int) -> Path:
        return CGROUP_ROOT / ctl / f"{self.prefix}-d{i}"

    def command(self, i: int) -> list[str]:
        """argv prefix that puts a process in device ``i``: its cgroups first (``ip netns exec`` remounts
        /sys), then its namespace."""
        if not self.emulated:
            return []
        tasks = [str(self._cgroup(ctl, i) / "tasks") for ctl in ("cpu", "memory")]
        return ["sh", "-c", _JOIN, "join", *tasks, "ip", "netns", "exec", self.namespace(i)]

    def env(self, i: int) -> dict[str, str]:
        return {"GLOO_SOCKET_IFNAME": "eth0"} if self.emulated else {}

    # -- lifecycle ----------------------------------------------------------------------------------
    def __enter__(self) -> EmulatedCluster:
        if not self.emulated:
            log.warning("device emulation unavailable (%s): running on loopback without shaping or caps", self.reason)
            return self
        atexit.register(self.close)
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old_handlers[sig] = signal.signal(sig, self._on_signal)
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _on_signal(self, signum, frame):
        self.close()
        old = self._old_handlers.get(signum)
        if callable(old):
            old(signum, frame)
        raise KeyboardInterrupt if signum == signal.SIGINT else SystemExit(128 + signum)

    def _create(self) -> None:
        _run("ip", "netns", "add", self.switch)
        self._created.append(("netns", self.switch))
        _run("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", self.switch, "link", "set", "br0", "up")
        for i, dev in enumerate(self.devices):
            ns = self.namespace(i)
            _run("ip", "netns", "add", ns)
            self._created.append(("netns", ns))
            host, peer = f"{self.prefix}h{i}", f"{self.prefix}p{i}"
            _run("ip", "link", "add", host, "type", "veth", "peer", "name", peer)
            _run("ip", "link", "set", host, "netns", ns)
            _run("ip", "link", "set", peer, "netns", self.switch)
            _run("ip", "-n", ns, "link", "set", host, "name", "eth0")
            _run("ip", "-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", "eth0")
            for args in (
                ("-n", ns, "link", "set", "eth0", "up"),
                ("-n", ns, "link", "set", "lo", "up"),
                ("-n", self.switch, "link", "set", peer, "master", "br0"),
                ("-n", self.switch, "link", "set", peer, "up"),
            ):
                _run("ip", *args)
            rate = f"{dev.bandwidth_mbit}mbit"
            tbf = ("root", "tbf", "rate", rate, "burst", "64kb", "latency", "200ms")
            # Shape both directions: egress of the device, and egress of the bridge port towards it.
            for namespace, link in ((ns, "eth0"), (self.switch, peer)):
                _run("tc", "-n", namespace, "qdisc", "add", "dev", link, *tbf)
            for ctl in ("cpu", "memory"):
                path = self._cgroup(ctl, i)
                path.mkdir()
                self._created.append(("cgroup", str(path)))
            (self._cgroup("cpu", i) / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
            (self._cgroup("cpu", i) / "cpu.cfs_quota_us").write_text(str(int(dev.cpu_share * CPU_PERIOD_US)))
            (self._cgroup("memory", i) / "memory.limit_in_bytes").write_text(str(dev.memory_mb * 2**20))
        log.info("emulated %d devices on bridge %s/br0 (%s.0/24)", len(self.devices), self.switch, self.subnet)

    def close(self) -> None:
        """Remove everything created, newest first; safe to call twice."""
        while self._created:
            kind, name = self._created.pop()
            try:
                if kind == "netns":
                    subprocess.run(["ip", "netns", "del", name], capture_output=True)  # also removes its veths
                else:
                    path = Path(name)
                    for pid in (path / "tasks").read_text().split() if (path / "tasks").exists() else []:
                        try:
                            os.kill(int(pid), signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                    path.rmdir()
            except OSError as exc:
                log.warning("could not remove %s %s: %s", kind, name, exc)
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        self._old_handlers.clear()

    def leftovers(self) -> list[str]:
        """Namespaces and cgroups of this cluster still present (empty after ``close``)."""
        out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        names = [line.split()[0] for line in out.splitlines() if line.startswith(self.prefix + "-")]
        groups = [str(p) for ctl in ("cpu", "memory") for p in (CGROUP_ROOT / ctl).glob(f"{self.prefix}-d*")]
        return names + groups
