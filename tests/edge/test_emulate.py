import subprocess
import sys

import pytest

from replab.edge.emulate import EmulatedCluster, EmulatedDevice, emulation_available

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


def test_device_specs_are_checked():
    with pytest.raises(ValueError, match="cpu_share"):
        EmulatedDevice("x", 0.0, 100, 10)
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
