"""Two FedAvg rounds through Flower's simulation engine (Ray), on a tiny random BERT and real WordNet glosses."""

import math

from replab.federated.flower import simulate

from .conftest import tiny_spec


def test_two_simulated_rounds_learn_and_count_their_bytes():
    rows = simulate(tiny_spec(), num_rounds=2)
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert rows[0]["test_acc"] == 0.25  # the untrained head predicts one class of four balanced ones
    assert rows[-1]["test_acc"] > 0.3 and rows[-1]["train_loss"] < math.log(4)
    one_model = rows[1]["upload_bytes_per_client"]
    assert rows[1]["download_bytes_per_client"] == 2 * one_model  # round 1 also carries the round-0 state
    assert rows[2]["download_bytes_per_client"] == one_model and rows[1]["replies"] == 2
    assert rows[1]["factor_averaging_error"] == 0.0  # no LoRA factors under full fine-tuning
