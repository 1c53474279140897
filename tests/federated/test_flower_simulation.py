"""FedAvg rounds through Flower's simulation engine (Ray), on a tiny random BERT and real WordNet glosses."""

import math

from replab.federated.flower import simulate

from .conftest import tiny_spec


def test_two_simulated_rounds_learn_count_bytes_and_run_a_plan_in_one_simulation():
    fft, lora = tiny_spec(), tiny_spec(method="lora", lr=2e-2)
    seen = []
    runs = simulate(iter([fft, lora]), num_rounds=2, on_row=lambda spec, row: seen.append(spec.method))
    assert [spec for spec, _ in runs] == [fft, lora] and seen == ["fft"] * 3 + ["lora"] * 3
    rows = runs[0][1]
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert rows[0]["test_acc"] == 0.25  # the untrained head predicts one class of four balanced ones
    assert rows[-1]["test_acc"] > 0.3 and rows[-1]["train_loss"] < math.log(4)
    one_model = rows[1]["upload_bytes_per_client"]
    # Round 1's global state is the round-0 model itself: nothing is sent twice.
    assert rows[1]["download_bytes_per_client"] == rows[2]["download_bytes_per_client"] == one_model
    assert rows[1]["replies"] == 2 and rows[1]["factor_error_vs_update"] == 0.0  # no LoRA factors under FFT
    lora_rows = runs[1][1]
    assert lora_rows[1]["upload_bytes_per_client"] < one_model / 5
    assert lora_rows[1]["factor_error_vs_update"] > 0  # two clients' factors differ after local training
    assert lora_rows[0]["trainable_share"] < rows[0]["trainable_share"] == 1.0
