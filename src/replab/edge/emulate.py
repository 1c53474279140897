"""Emulated heterogeneous edge devices on one Linux machine: each device a network namespace on a shared
bridge, its link shaped with ``tc tbf``, its CPU share and memory capped with cgroup v1.

Needs root, iproute2 and cgroup v1 (cpu, memory). Without them :class:`EmulatedCluster` falls back to plain
loopback processes and says so (``emulated`` is False). Everything it creates, and every process started in a
device, is removed on exit, on an exception and on SIGINT/SIGTERM/SIGHUP. Names carry the owner's pid
(namespaces ``rl<pid>-sw`` and ``rl<pid>-d<i>``, cgroups ``rl<pid>-d<i>``, veths ``rl<pid>h<i>``/``rl<pid>p<i>``),
so what a run that could not clean up (SIGKILL, power loss) left behind is swept when the next cluster starts.
netem is missing from the kernels this was built on, so links get a rate limit but no added propagation delay.
"""

from __future__ import annotations

import atexit
import errno
import logging
import math
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
CONTROLLERS = ("cpu", "memory")
QUEUE_BYTES = 8 * 2**20  # a tbf queue of 8 MiB: no drops for a step's boundary tensors
CPU_PERIOD_US = 10_000  # short periods spread throttling evenly over ms-scale layers (less noise)
# The kernel rejects a CFS quota under 1 ms: with the 10 ms period a device gets at least a tenth of a core.
MIN_CPU_SHARE = 0.1
MAX_DEVICES = 200
IFNAMSIZ = 15  # the longest interface name the kernel takes
PID_MAX_LIMIT = 4_194_304  # the largest pid_max Linux allows (so a pid has at most 7 digits)
TEARDOWN_WAIT_S = 10.0  # how long a teardown waits for killed processes to leave the devices
# Joins the cgroups given as the first two arguments, then runs the rest (argv, no shell string from params).
_JOIN = 'echo $$ > "$1" && echo $$ > "$2" && shift 2 && exec "$@"'
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_NAMESPACE_OR_CGROUP = re.compile(r"rl(\d+)-(?:sw|d\d+)")  # this module's names; group 1: the owner's pid
_VETH = re.compile(r"rl(\d+)[hp]\d+")


@dataclass(frozen=True)
class EmulatedDevice:
    name: str
    cpu_share: float  # cores (0.25 = a quarter of one core)
    memory_mb: int
    bandwidth_mbit: float

    def __post_init__(self):
        cores = os.cpu_count() or 1
        if not MIN_CPU_SHARE <= self.cpu_share <= cores:  # also refuses NaN
            raise ValueError(
                f"{self.name}: cpu_share must be between {MIN_CPU_SHARE} (the minimum: a 1 ms CPU quota per "
                f"{CPU_PERIOD_US // 1000} ms period, the least the kernel takes) and {cores} cores, "
                f"got {self.cpu_share}"
            )
        if self.memory_mb <= 0 or self.bandwidth_mbit <= 0:
            raise ValueError(f"{self.name}: memory_mb and bandwidth_mbit must be positive")


def tbf_bucket(bandwidth_mbit: float) -> tuple[str, ...]:
    """Bucket and queue of a device's ``tbf`` shaper. The bucket is as small as the kernel's timer allows (one
    250 Hz tick of the rate, at least a few frames): a larger one lets whole compressed boundary tensors pass at
    line speed, which the planner does not model. The queue is long enough that a step's fp32 boundary
    tensors are never dropped (drops would mean retransmits and timing noise on the fp32 arms only)."""
    burst = max(4096, math.ceil(bandwidth_mbit * 1e6 / 8 / 250))
    return ("burst", str(burst), "limit", str(QUEUE_BYTES))


def emulation_available() -> tuple[bool, str]:
    """Whether namespaces, tc and cgroup v1 can be used here, and if not, why."""
    if os.geteuid() != 0:
        return False, "not root"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return False, f"`{tool}` not found (Debian: iproute2)"
    for ctl in CONTROLLERS:
        if not (CGROUP_ROOT / ctl / "tasks").exists():
            return False, f"cgroup v1 controller {ctl!r} not mounted at {CGROUP_ROOT / ctl}"
    return True, ""


def veth_names(prefix: str, i: int) -> tuple[str, str]:
    """Device ``i``'s veth pair while in the host namespace: its end (renamed eth0 in the device) and the
    bridge port's end."""
    return f"{prefix}h{i}", f"{prefix}p{i}"


def _run(*argv: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")


# -- finding and removing what is left -------------------------------------------------------------------
def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[:1] != ["Z"]


def _namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _host_links() -> list[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return [line.split(": ", 2)[1].split("@")[0] for line in out.splitlines() if ": " in line]


def _netns_pids(name: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout
    return [int(p) for p in out.split() if p.isdigit()]


def _cgroup_dirs(path: Path) -> list[Path]:
    """``path`` and the cgroups below it, deepest first (the order rmdir needs)."""
    return sorted((Path(d) for d, _, _ in os.walk(path)), key=lambda p: len(p.parts), reverse=True)


def _cgroup_pids(path: Path) -> list[int]:
    """The processes (``cgroup.procs``, not threads) in cgroup ``path`` and below it."""
    pids = []
    for d in _cgroup_dirs(path):
        try:
            pids += [int(p) for p in (d / "cgroup.procs").read_text().split()]
        except OSError:  # removed meanwhile
            pass
    return pids


def _kill_until_gone(find: Callable[[], list[int]], deadline: float) -> list[int]:
    """SIGKILL the processes ``find`` lists, again and again (they may have forked meanwhile), until it lists
    none or ``deadline`` (``time.monotonic()``) has passed; returns those it still lists."""
    delay = 0.005
    while True:
        pids = [pid for pid in find() if pid != os.getpid()]
        if not pids:
            return []
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if time.monotonic() >= deadline:
            return pids
        time.sleep(delay)
        delay = min(2 * delay, 0.1)


def _remove_cgroup(path: Path, deadline: float) -> str | None:
    """Kill what is in cgroup ``path``, wait for it to be empty and remove it (child cgroups first), retrying on
    EBUSY with a short backoff until ``deadline``; returns why it is still there, or None."""
    delay = 0.005
    while True:
        left = _kill_until_gone(lambda: _cgroup_pids(path), deadline)
        busy = None
        for d in _cgroup_dirs(path):
            try:
                d.rmdir()
            except FileNotFoundError:
                pass
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    return str(exc)
                busy = exc
                break
        if busy is None:
            return None
        if time.monotonic() >= deadline:
            return f"{busy}; processes still inside: {left or _cgroup_pids(path) or 'none listed'}"
        time.sleep(delay)
        delay = min(2 * delay, 0.1)


def _remove_namespace(name: str, deadline: float) -> str | None:
    """Kill the processes in network namespace ``name``, wait for them, then delete it (its veths go with it)."""
    left = _kill_until_gone(lambda: _netns_pids(name), deadline)
    proc = subprocess.run(["ip", "netns", "del", name], capture_output=True, text=True)
    if proc.returncode != 0 and name in _namespaces():
        return proc.stderr.strip()
    return f"name removed, but processes {left} still run in it" if left else None


def _teardown(resources: list[tuple[str, str]]) -> dict[str, str]:
    """Remove ``resources`` (``("netns" | "cgroup" | "link", name)``, in the order given) and every process in
    them, waiting at most about :data:`TEARDOWN_WAIT_S` for the processes; returns ``{name: why}`` for each
    one still there."""
    deadline = time.monotonic() + TEARDOWN_WAIT_S
    cgroups = [Path(name) for kind, name in resources if kind == "cgroup"]
    # Kill everything first, all devices at once, so that the waits below overlap.
    for kind, name in resources:
        if kind == "netns":
            _kill_until_gone(lambda name=name: _netns_pids(name), 0)
    _kill_until_gone(lambda: [pid for path in cgroups for pid in _cgroup_pids(path)], deadline)
    links = set(_host_links()) if any(kind == "link" for kind, _ in resources) else set()
    failed = {}
    for kind, name in resources:
        # Each gets a moment of its own even when stuck processes used up the shared deadline.
        until = max(deadline, time.monotonic() + 0.2)
        try:
            if kind == "netns":
                why = _remove_namespace(name, until)
            elif kind == "cgroup":
                why = _remove_cgroup(Path(name), until)
            elif name in links:  # a veth not moved into its namespace (creation stopped halfway)
                proc = subprocess.run(["ip", "link", "del", name], capture_output=True, text=True)
                why = proc.stderr.strip() if proc.returncode != 0 and name in _host_links() else None
            else:
                why = None
        except OSError as exc:
            why = str(exc)
        if why:
            failed[name] = why
    return failed


def sweep_stale() -> list[str]:
    """Remove the namespaces, cgroups and host-side veths of this module's naming scheme whose owning process
    no longer exists (a run killed by SIGKILL or a power loss could not clean up), with any processes still in
    them; returns what was removed. A pid since reused by another process keeps its leftovers until that
    process is gone too."""
    alive: dict[int, bool] = {}

    def stale(pattern: re.Pattern, name: str) -> bool:
        match = pattern.fullmatch(name)
        if match is None:
            return False
        pid = int(match[1])
        if pid not in alive:
            alive[pid] = pid == os.getpid() or _pid_alive(pid)
        return not alive[pid]

    found = [("link", name) for name in _host_links() if stale(_VETH, name)]
    for ctl in CONTROLLERS:
        root = CGROUP_ROOT / ctl
        if root.is_dir():
            found += [
                ("cgroup", str(p)) for p in sorted(root.iterdir()) if p.is_dir() and stale(_NAMESPACE_OR_CGROUP, p.name)
            ]
    found += [("netns", name) for name in _namespaces() if stale(_NAMESPACE_OR_CGROUP, name)]
    if not found:
        return []
    failed = _teardown(found)
    removed = [f"{kind} {name}" for kind, name in found if name not in failed]
    if removed:
        log.warning("swept what runs that are gone left behind: %s", ", ".join(removed))
    for name, why in failed.items():
        log.warning("could not sweep stale %s: %s", name, why)
    return removed


class EmulatedCluster:
    """``with EmulatedCluster(devices) as cluster:`` then run rank ``i`` as ``cluster.command(i) + argv`` with
    ``cluster.env(i)``; rank 0's address is ``cluster.master_addr``."""

    def __init__(
        self, devices: list[EmulatedDevice], subnet: str = "10.231.0", require: bool = False, enabled: bool = True
    ):
        if not 1 <= len(devices) <= MAX_DEVICES:
            raise ValueError(f"between 1 and {MAX_DEVICES} devices")
        self.devices = list(devices)
        self.subnet = subnet
        self.prefix = f"rl{os.getpid()}"  # the full pid: sweep_stale tells a dead run's leftovers by it
        ok, why = emulation_available() if enabled else (False, "emulation turned off by the caller")
        if not ok and require:
            raise RuntimeError(f"device emulation unavailable: {why}")
        self.emulated, self.reason = ok, why
        self._created: list[tuple[str, str]] = []  # ("netns" | "cgroup" | "link", name), in creation order
        self._old_handlers: dict[int, object] = {}
        self._owner: int | None = None  # the pid that entered: forked children neither close nor sweep
        self._closing = False
        self._pending: list[int] = []  # signals that arrived while close() ran

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
        procs = [str(self._cgroup(ctl, i) / "cgroup.procs") for ctl in CONTROLLERS]
        return ["sh", "-c", _JOIN, "join", *procs, "ip", "netns", "exec", self.namespace(i)]

    def env(self, i: int) -> dict[str, str]:
        return {"GLOO_SOCKET_IFNAME": "eth0"} if self.emulated else {}

    # -- lifecycle ----------------------------------------------------------------------------------
    def __enter__(self) -> EmulatedCluster:
        if not self.emulated:
            log.warning("device emulation unavailable (%s): running on loopback without shaping or caps", self.reason)
            return self
        self._owner = os.getpid()
        self.prefix = f"rl{self._owner}"  # entered in another process than the one that made it: that one's pid
        longest = max(veth_names(self.prefix, len(self.devices) - 1), key=len)
        if len(longest) > IFNAMSIZ:  # cannot happen with pids below PID_MAX_LIMIT and MAX_DEVICES (tested)
            raise RuntimeError(f"interface name {longest!r} is longer than {IFNAMSIZ} characters")
        self._install_signal_handlers()
        atexit.register(self.close)
        try:
            try:
                sweep_stale()
            except Exception as exc:  # leftovers of others must not stop this run
                log.warning("could not sweep stale emulation resources: %s", exc)
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            log.warning("cluster entered outside the main thread: no teardown on signals, only on exit")
            return
        for sig in _SIGNALS:
            old = signal.getsignal(sig)
            if old == signal.SIG_IGN:  # ignored (nohup, a background job): it stays ignored
                continue
            self._old_handlers[sig] = signal.SIG_DFL if old is None else old
            signal.signal(sig, self._on_signal)

    def _restore_signal_handlers(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig, handler in self._old_handlers.items():
                if signal.getsignal(sig) == self._on_signal:  # not if someone installed theirs after ours
                    signal.signal(sig, handler)
            self._old_handlers.clear()

    def _on_signal(self, signum, frame):
        old = self._old_handlers.get(signum, signal.SIG_DFL)
        if os.getpid() != self._owner:  # a forked child inherited this handler: behave as it would without us
            signal.signal(signum, old)
            if callable(old):
                old(signum, frame)
            else:
                os.kill(os.getpid(), signum)
            return
        if self._closing:  # close() is running (on exit or for an earlier signal): it acts on this when done
            self._pending.append(signum)
            return
        self.close()
        self._stop_for(signum, frame, old)

    @staticmethod
    def _stop_for(signum, frame, old) -> None:
        """What the signal does once the cluster is gone: the previous handler, then stop the run."""
        if callable(old):
            old(signum, frame)  # default_int_handler raises KeyboardInterrupt itself
        raise KeyboardInterrupt if signum == signal.SIGINT else SystemExit(128 + signum)

    def _create(self) -> None:
        # Each resource is recorded before it is made, so that a signal in between cannot leak it (removing
        # something never made is harmless).
        self._created.append(("netns", self.switch))
        _run("ip", "netns", "add", self.switch)
        _run("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", self.switch, "link", "set", "br0", "up")
        for i, dev in enumerate(self.devices):
            ns = self.namespace(i)
            self._created.append(("netns", ns))
            _run("ip", "netns", "add", ns)
            host, peer = veth_names(self.prefix, i)
            self._created.append(("link", host))  # deleting one end removes both
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
            tbf = ("root", "tbf", "rate", f"{dev.bandwidth_mbit}mbit", *tbf_bucket(dev.bandwidth_mbit))
            # Shape both directions: egress of the device, and egress of the bridge port towards it.
            for namespace, link in ((ns, "eth0"), (self.switch, peer)):
                _run("tc", "-n", namespace, "qdisc", "add", "dev", link, *tbf)
            for ctl in CONTROLLERS:
                path = self._cgroup(ctl, i)
                self._created.append(("cgroup", str(path)))
                path.mkdir()
            (self._cgroup("cpu", i) / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
            (self._cgroup("cpu", i) / "cpu.cfs_quota_us").write_text(str(round(dev.cpu_share * CPU_PERIOD_US)))
            (self._cgroup("memory", i) / "memory.limit_in_bytes").write_text(str(dev.memory_mb * 2**20))
            # No swapping inside a device: a process over its cap is killed (and reported), never left thrashing.
            (self._cgroup("memory", i) / "memory.swappiness").write_text("0")
        log.info("emulated %d devices on bridge %s/br0 (%s.0/24)", len(self.devices), self.switch, self.subnet)

    def close(self) -> None:
        """Kill every process in the devices, wait for them, then remove everything created, newest first; safe
        to call twice. A signal that arrives meanwhile takes effect once it is done."""
        if self._closing or (self._owner is not None and os.getpid() != self._owner):
            return
        self._closing = True
        try:
            failed = _teardown(self._created[::-1])
            for kind, name in self._created[::-1]:
                if name in failed:
                    log.warning("could not remove %s %s: %s", kind, name, failed[name])
            self._created.clear()
        finally:
            old_handlers = dict(self._old_handlers)
            self._restore_signal_handlers()
            atexit.unregister(self.close)
            self._closing = False
            pending, self._pending = self._pending, []
        if pending:
            if threading.current_thread() is threading.main_thread():
                self._stop_for(pending[0], None, old_handlers.get(pending[0], signal.SIG_DFL))
            else:
                signal.raise_signal(pending[0])

    def cap_hits(self) -> list[int]:
        """Per device, how often its memory reached the cap (cgroup v1's ``memory.failcnt``: the kernel then
        reclaimed pages, so a resident peak under it may be held down by the cap); zeros when not emulated."""
        counts = []
        for i in range(len(self.devices)):
            try:
                counts.append(int((self._cgroup("memory", i) / "memory.failcnt").read_text()) if self.emulated else 0)
            except (OSError, ValueError):
                counts.append(0)
        return counts

    def oom_kills(self) -> list[int]:
        """Per device, the processes the kernel killed for going over its memory cap (cgroup v1's
        ``memory.oom_control``); zeros when not emulated. Read it before the cluster closes."""
        counts = []
        for i in range(len(self.devices)):
            try:
                text = (self._cgroup("memory", i) / "memory.oom_control").read_text() if self.emulated else ""
            except OSError:
                text = ""
            found = re.search(r"^oom_kill (\d+)$", text, re.M)
            counts.append(int(found.group(1)) if found else 0)
        return counts

    def leftovers(self) -> list[str]:
        """Namespaces, cgroups and host-side veths of this cluster still present (empty after ``close``)."""
        names = [name for name in _namespaces() if name.startswith(self.prefix + "-")]
        links = [name for name in _host_links() if re.fullmatch(rf"{self.prefix}[hp]\d+", name)]
        groups = [str(p) for ctl in CONTROLLERS for p in (CGROUP_ROOT / ctl).glob(f"{self.prefix}-d*")]
        return names + links + groups
