import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from replab.edge.emulate import (
    CGROUP_ROOT,
    CPU_PERIOD_US,
    IFNAMSIZ,
    MAX_DEVICES,
    MIN_CPU_SHARE,
    PID_MAX_LIMIT,
    EmulatedCluster,
    EmulatedDevice,
    emulation_available,
    veth_names,
)

available, why = emulation_available()
needs_root = pytest.mark.skipif(not available, reason=f"device emulation needs root, iproute2 and cgroup v1: {why}")

DEVICES = [EmulatedDevice("fast", 1.0, 1024, 100), EmulatedDevice("slow", 0.25, 512, 20)]
SERVER = (
    "import socket; s=socket.socket(); s.bind(('{addr}', 5555)); s.listen(); "
    "c,_=s.accept(); c.sendall(b'ok'); c.close()"
)
CLIENT = (
    "import socket, time\nfor _ in range(50):\n try:\n"
    "  c=socket.create_connection(('{addr}', 5555), 1); print(c.recv(2).decode()); break\n"
    " except OSError: time.sleep(0.1)"
)


SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]


def test_device_specs_are_checked():
    with pytest.raises(ValueError, match="cpu_share"):
        EmulatedDevice("x", 0.0, 100, 10)
    for share in (0.05, 0.099, float("nan")):
        with pytest.raises(ValueError, match=r"cpu_share must be between 0\.1 \(the minimum"):
            EmulatedDevice("x", share, 100, 10)
    assert EmulatedDevice("x", MIN_CPU_SHARE, 100, 10).cpu_share == 0.1
    assert MIN_CPU_SHARE * CPU_PERIOD_US >= 1000  # the kernel's least CFS quota, 1 ms
    with pytest.raises(ValueError, match="positive"):
        EmulatedDevice("x", 0.5, 0, 10)


@needs_root
def test_cluster_is_created_connected_shaped_and_fully_removed():
    with EmulatedCluster(DEVICES, require=True) as cluster:
        assert cluster.emulated and len(cluster.leftovers()) == 3 + 4  # switch + 2 namespaces, 2 x (cpu, memory)
        server = subprocess.Popen(cluster.command(0) + [sys.executable, "-c", SERVER.format(addr=cluster.address(0))])
        reply = subprocess.run(
            cluster.command(1) + [sys.executable, "-c", CLIENT.format(addr=cluster.address(0))],
            capture_output=True,
            text=True,
            timeout=30,
        )
        server.wait(timeout=10)
        assert reply.stdout.strip() == "ok"
        qdisc = subprocess.run(
            ["tc", "-n", cluster.namespace(1), "qdisc", "show", "dev", "eth0"], capture_output=True, text=True
        )
        assert "tbf" in qdisc.stdout and "20Mbit" in qdisc.stdout
        quota = (cluster._cgroup("cpu", 1) / "cpu.cfs_quota_us").read_text().strip()
        assert quota == "2500"
    assert cluster.leftovers() == []


@needs_root
def test_teardown_also_on_failure():
    with pytest.raises(RuntimeError, match="boom"):
        with EmulatedCluster(DEVICES, require=True) as cluster:
            assert cluster.leftovers()
            raise RuntimeError("boom")
    assert cluster.leftovers() == []


@needs_root
def test_gloo_pipeline_runs_across_emulated_devices():
    from replab.edge.pipeline import PipelineConfig, launch, single_process_losses

    cfg = PipelineConfig(
        starts=[0, 3],
        steps=3,
        batch=8,
        n_microbatches=2,
        model=dict(n_blocks=3, d_model=32, n_heads=2, vocab=32, seq_len=16),
    )
    with EmulatedCluster(DEVICES, require=True) as cluster:
        result = launch(
            cfg,
            commands={i: cluster.command(i) for i in range(2)},
            master_addr=cluster.master_addr,
            env_extra={i: cluster.env(i) for i in range(2)},
            timeout=300,
        )
    assert result["losses"] == pytest.approx(single_process_losses(cfg), rel=1e-5)
    assert cluster.leftovers() == []


def test_fallback_without_emulation_says_so(monkeypatch, caplog):
    import replab.edge.emulate as emulate

    monkeypatch.setattr(emulate, "emulation_available", lambda: (False, "not root"))
    with EmulatedCluster(DEVICES) as cluster:
        assert not cluster.emulated and cluster.command(0) == [] and cluster.master_addr == "127.0.0.1"
    assert "running on loopback" in caplog.text
    with pytest.raises(RuntimeError, match="not root"):
        EmulatedCluster(DEVICES, require=True)


def test_names_fit_the_kernel_limit_for_any_pid():
    for i in range(MAX_DEVICES):
        assert all(len(name) <= IFNAMSIZ for name in veth_names(f"rl{PID_MAX_LIMIT}", i))
    assert int(Path("/proc/sys/kernel/pid_max").read_text()) <= PID_MAX_LIMIT


def _alive(pid: int) -> bool:
    """Alive and not a zombie (a zombie's parent may be slow to reap it, or be an init that never does)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _present(prefix: str) -> list[str]:
    """Namespaces and cgroups named with ``prefix`` (the tests' own view, independent of the module's)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    names = [line.split()[0] for line in out.splitlines() if line.startswith(prefix + "-")]
    return names + [str(p) for ctl in ("cpu", "memory") for p in (CGROUP_ROOT / ctl).glob(prefix + "-*")]


def _wait_inside(cluster: EmulatedCluster, i: int, pid: int) -> None:
    """Until process ``pid`` has joined device ``i``'s cgroups and namespace."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        groups = [(cluster._cgroup(ctl, i) / "cgroup.procs").read_text().split() for ctl in ("cpu", "memory")]
        netns = subprocess.run(["ip", "netns", "pids", cluster.namespace(i)], capture_output=True, text=True)
        if all(str(pid) in g for g in groups) and str(pid) in netns.stdout.split():
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} never got into device {i}")


@needs_root
def test_close_kills_what_runs_in_the_devices_and_removes_everything(caplog):
    with EmulatedCluster(DEVICES, require=True) as cluster:
        sleeper = subprocess.Popen(cluster.command(0) + SLEEPER)
        forker = subprocess.Popen(cluster.command(1) + ["sh", "-c", "sleep 600 & sleep 600 & wait"])
        _wait_inside(cluster, 0, sleeper.pid)
        _wait_inside(cluster, 1, forker.pid)
        deadline = time.monotonic() + 10
        while len(inside := (cluster._cgroup("cpu", 1) / "cgroup.procs").read_text().split()) < 3:
            assert time.monotonic() < deadline, "the shell's children never started"
            time.sleep(0.02)
    assert cluster.leftovers() == []
    assert sleeper.wait(timeout=10) == -signal.SIGKILL and forker.wait(timeout=10) == -signal.SIGKILL
    assert not [pid for pid in map(int, inside) if _alive(pid)]
    assert "could not remove" not in caplog.text


SCRIPT = """
import signal, subprocess, sys, time
from replab.edge.emulate import EmulatedCluster, EmulatedDevice

signal.signal(signal.SIGINT, signal.default_int_handler)  # as in an interactive run, even if SIGINT came ignored
devices = [EmulatedDevice("a", 0.5, 256, 50), EmulatedDevice("b", 0.5, 256, 50)]
with EmulatedCluster(devices, require=True) as cluster:
    procs = [subprocess.Popen(cluster.command(i) + [sys.executable, "-c", "import time; time.sleep(600)"])
             for i in range(2)]
    for i, p in enumerate(procs):  # in the device: in its cgroup and namespace
        while str(p.pid) not in subprocess.run(["ip", "netns", "pids", cluster.namespace(i)],
                                               capture_output=True, text=True).stdout.split():
            time.sleep(0.02)
    print("ready", cluster.prefix, *(p.pid for p in procs), flush=True)
    if sys.argv[1] == "wait":
        for p in procs:
            p.wait()
    else:
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
"""


@needs_root
@pytest.mark.parametrize("blocked_in", ["wait", "sleep"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_during_a_run_leaves_nothing_behind(sig, blocked_in):
    script = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(SCRIPT), blocked_in],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = script.stdout.readline().split()
        assert line[:1] == ["ready"], script.communicate(timeout=30)[1]
        prefix, pids = line[1], [int(p) for p in line[2:]]
        assert len(pids) == 2 and all(_alive(pid) for pid in pids) and len(_present(prefix)) == 3 + 4
        time.sleep(0.2)  # well into its wait
        script.send_signal(sig)
        _, err = script.communicate(timeout=30)
        assert script.returncode != 0
        assert "could not remove" not in err
        assert _present(prefix) == []
        assert not [pid for pid in pids if _alive(pid)]
    finally:
        if script.poll() is None:
            script.kill()
            script.wait()


@needs_root
def test_stale_leftovers_of_a_dead_run_are_swept(caplog):
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid that no longer exists (and will not be reused within this test)
    prefix = f"rl{gone.pid}"
    ns, host = f"{prefix}-d0", veth_names(prefix, 1)[0]
    cgroups = [CGROUP_ROOT / ctl / f"{prefix}-d{i}" for ctl in ("cpu", "memory") for i in range(2)]
    sleeper = None
    try:
        subprocess.run(["ip", "netns", "add", ns], check=True)
        subprocess.run(
            ["ip", "link", "add", host, "type", "veth", "peer", "name", veth_names(prefix, 1)[1]], check=True
        )
        for path in cgroups:
            path.mkdir()
        # A process left in the namespace and in one of the cgroups (the others are process-free).
        sleeper = subprocess.Popen(["ip", "netns", "exec", ns, "sleep", "600"])
        deadline = time.monotonic() + 10
        while (
            str(sleeper.pid) not in subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
        ):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        (cgroups[0] / "cgroup.procs").write_text(str(sleeper.pid))
        assert len(_present(prefix)) == 1 + 4

        with EmulatedCluster(DEVICES[:1], require=True) as cluster:
            assert cluster.prefix == f"rl{os.getpid()}" and len(cluster.leftovers()) == 2 + 2
            assert _present(prefix) == []
        assert sleeper.wait(timeout=10) == -signal.SIGKILL
        links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
        assert host not in links
        assert "swept" in caplog.text and ns in caplog.text and str(cgroups[0]) in caplog.text
    finally:
        if sleeper is not None and sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", host], capture_output=True)
        for path in cgroups:
            if path.exists():
                path.rmdir()


@needs_root
def test_a_signal_during_close_takes_effect_once_it_is_done(monkeypatch):
    import replab.edge.emulate as emulate

    teardown = emulate._teardown

    def signalled_teardown(resources):
        os.kill(os.getpid(), signal.SIGTERM)  # handled (deferred) at the next bytecode, inside the teardown
        return teardown(resources)

    monkeypatch.setattr(emulate, "_teardown", signalled_teardown)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stopped:
        with EmulatedCluster(DEVICES[:1], require=True) as cluster:
            assert signal.getsignal(signal.SIGTERM) == cluster._on_signal
    assert stopped.value.code == 128 + signal.SIGTERM
    assert cluster.leftovers() == [] and signal.getsignal(signal.SIGTERM) == before


@needs_root
def test_a_forked_child_leaves_the_cluster_alone():
    with EmulatedCluster(DEVICES[:1], require=True) as cluster:
        pid = os.fork()
        if pid == 0:  # the child: its close() is a no-op, and SIGTERM kills it as it would without the cluster
            try:
                cluster.close()
                time.sleep(30)
            finally:
                os._exit(0)
        time.sleep(0.2)
        os.kill(pid, signal.SIGTERM)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM
        assert len(cluster.leftovers()) == 2 + 2
    assert cluster.leftovers() == []


SINK = (
    "import socket, time; s=socket.socket(); s.bind(('{addr}', 5556)); s.listen(); c,_=s.accept(); n=0\n"
    "while True:\n b=c.recv(1<<16)\n if not b: break\n n+=len(b)\nprint(n)"
)
SOURCE = (
    "import socket, time\nfor _ in range(50):\n try: c=socket.create_connection(('{addr}', 5556), 1); break\n"
    " except OSError: time.sleep(0.1)\nt=time.perf_counter(); c.sendall(b'x' * {n}); c.shutdown(socket.SHUT_WR)\n"
    "c.recv(1); print(time.perf_counter() - t)"
)


@needs_root
def test_a_link_carries_data_at_its_slower_ends_rate():
    # The planner charges a 50 -> 20 Mbit/s link at 20 Mbit/s; the emulator must agree (no large free burst).
    n = 2_500_000  # 1 s at 20 Mbit/s, 0.4 s at 50
    devices = [EmulatedDevice("a", 1.0, 512, 50), EmulatedDevice("b", 1.0, 512, 20)]
    with EmulatedCluster(devices, require=True) as cluster:
        sink = subprocess.Popen(
            cluster.command(1) + [sys.executable, "-c", SINK.format(addr=cluster.address(1))],
            stdout=subprocess.PIPE,
            text=True,
        )
        sent = subprocess.run(
            cluster.command(0) + [sys.executable, "-c", SOURCE.format(addr=cluster.address(1), n=n)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        received = sink.communicate(timeout=30)[0]
    assert int(received) == n
    seconds = float(sent.stdout)
    assert 0.85 < seconds * 20e6 / 8 / n < 1.3, seconds


TRAINING = """
import sys
from replab.edge.emulate import EmulatedDevice
from replab.edge.experiments import run_pipeline
from replab.edge.pipeline import PipelineConfig

cfg = PipelineConfig(starts=[0, 2], steps=100_000, batch=8, n_microbatches=2,
                     model=dict(n_blocks=2, d_model=32, n_heads=2, vocab=32, seq_len=16))
run_pipeline(cfg, [EmulatedDevice("a", 0.5, 512, 50), EmulatedDevice("b", 0.5, 512, 20)], log_dir=sys.argv[1])
"""


@needs_root
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_mid_training_stops_every_rank_and_removes_the_cluster(sig, tmp_path):
    script = subprocess.Popen([sys.executable, "-c", textwrap.dedent(TRAINING), str(tmp_path)], text=True)
    try:
        deadline = time.monotonic() + 60
        # Training has begun once both ranks are running (their processes exist, holding the config).
        while len(_ranks(tmp_path)) < 2 or not (tmp_path / "rank1.log").exists():
            assert time.monotonic() < deadline and script.poll() is None
            time.sleep(0.1)
        time.sleep(2)
        script.send_signal(sig)
        script.wait(timeout=30)
        assert script.returncode != 0
        assert _present(f"rl{script.pid}") == []
        time.sleep(0.5)
        assert _ranks(tmp_path) == []  # no rank left waiting in gloo
    finally:
        if script.poll() is None:
            script.kill()
            script.wait()


def _ranks(folder) -> list[int]:
    out = subprocess.run(["pgrep", "-f", f"replab.edge.pipeline {folder}"], capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split()]
