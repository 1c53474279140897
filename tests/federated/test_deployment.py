"""The deployment engine on loopback: a real flower-superlink and flower-supernode processes, `flwr run`."""

import json

from replab.federated.deploy import LoopbackFederation, write_app

from .conftest import tiny_spec


def test_superlink_and_supernodes_run_two_rounds_and_stop(tmp_path):
    rounds = tmp_path / "rounds.json"
    app = write_app(tmp_path / "app", tiny_spec(), num_rounds=2, log_file=rounds, round_timeout=300)
    with LoopbackFederation(tmp_path / "fed", n=2) as fed:
        done = fed.run(app, timeout=400)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        processes = [fed.link, *fed.nodes]
        assert all(p.poll() is None for p in processes)
    assert all(p.poll() is not None for p in processes)  # stopped on exit
    rows = json.loads(rounds.read_text())
    assert [r["round"] for r in rows] == [0, 1, 2] and [r["replies"] for r in rows[1:]] == [2, 2]
    assert rows[-1]["test_acc"] > 0.25
