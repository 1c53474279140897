"""The study's plan, time to target and the headline claims, on made-up rows (no training)."""

import math

import pytest

from replab.federated import experiment as ex
from replab.federated.headline import headline, seed_rows
from replab.federated.params import HEADLINE_METHODS
from replab.measure import machine

from .conftest import tiny_spec

DESIGN = ex.Design(
    methods=("federa", "lora", "olora", "fft"), headline_methods=HEADLINE_METHODS, lr_grid=(1e-4, 1e-3),
    alphas=(0.1, 0.5), headline_alpha=0.5, seeds=2,
)  # fmt: skip


def rows(val: list[float], train_s=1.0, down=1000, up=1000) -> list[dict]:
    out = [{"round": 0, "val_acc": val[0], "test_acc": val[0], "trainable_share": 0.01}]
    for i, v in enumerate(val[1:], 1):
        out.append({"round": i, "val_acc": v, "test_acc": v - 0.01, "train_s_slowest": train_s,
                    "aggregation_s": 0.0, "download_bytes_per_client": down, "upload_bytes_per_client": up,
                    "factor_error_vs_update": 0.1, "factor_error_vs_product": 0.01})  # fmt: skip
    return out


def test_the_plan_tunes_first_then_runs_seeds_and_alphas_at_the_chosen_rates():
    runs = ex.Runs()
    planned = []
    for spec in ex.plan(tiny_spec(), DESIGN, runs):
        planned.append((spec.method, spec.alpha, spec.seed, spec.lr))
        # lora is best at 1e-3, every other method at 1e-4
        good = (spec.method == "lora") == (spec.lr == 1e-3)
        for row in rows([0.1, 0.5 if good else 0.3]):
            runs.add(spec, row)
    assert len(planned) == DESIGN.n_runs() == 4 * 2 + 3 * 1 + 4 * 1
    tuning = planned[:8]
    assert {(m, lr) for m, _, _, lr in tuning} == {(m, lr) for m in DESIGN.methods for lr in DESIGN.lr_grid}
    assert [m for m, *_ in tuning[:4]] != [m for m, *_ in tuning[4:]]  # the order rotates
    assert runs.chosen(DESIGN) == {"federa": 1e-4, "lora": 1e-3, "olora": 1e-4, "fft": 1e-4}
    assert {(m, s, lr) for m, a, s, lr in planned[8:11]} == {("federa", 1, 1e-4), ("lora", 1, 1e-3), ("fft", 1, 1e-4)}
    assert all(a == 0.1 and s == 0 for _, a, s, _ in planned[11:])


def test_time_to_target_counts_training_aggregation_and_the_links():
    r = rows([0.1, 0.5, 0.8, 0.9], train_s=2.0, down=1_250_000, up=1_250_000)  # 10 Mbit each way
    assert ex.time_to_target(r, 0.8, None) == pytest.approx(4.0)
    assert ex.time_to_target(r, 0.8, link_mbit=20) == pytest.approx(4.0 + 2 * (0.5 + 0.5))
    assert ex.time_to_target(r, 0.95, None) == math.inf and ex.rounds_to_target(r, 0.8) == 2
    assert ex.ratio(1.0, 4.0) == 0.25 and ex.ratio(math.inf, 4.0) == math.inf and math.isnan(ex.ratio(1.0, math.inf))
    assert ex.best_validation(rows([0.1, 0.7, 0.7, 0.6]))["round"] == 1  # the earliest best round


def fake_runs(federa_val: list[float], fft_val: list[float], lora_val: list[float]):
    runs = ex.Runs()
    design = ex.Design(methods=HEADLINE_METHODS, headline_methods=HEADLINE_METHODS, lr_grid=(1e-3,),
                       alphas=(0.5,), headline_alpha=0.5, seeds=3)  # fmt: skip
    for seed in range(3):
        for method, val, up in (
            ("federa", federa_val, 10_000),
            ("fft", fft_val, 1_000_000),
            ("lora", lora_val, 10_000),
        ):
            for row in rows(val, train_s=1.0, down=up, up=up):
                runs.add(tiny_spec(method=method, alpha=0.5, seed=seed, lr=1e-3), row)
    return runs, design


def claims_of(runs, design, level=0.7):
    per_seed = seed_rows(runs, design, runs.chosen(design), level, link_mbit=20)
    return headline(
        per_seed, level=level, link_mbit=20, link_device="a device", trainable_share={"federa": 0.01},
        bytes_per_round={"federa": (10_000, 10_000), "fft": (1_000_000, 1_000_000)}, factor_error_vs_update=0.1,
        noniid_drop={}, machine=machine(), profile="tiny", scale={"headline_alpha": 0.5},
    )  # fmt: skip


def test_the_headline_meets_its_targets_when_federa_is_fast_and_accurate():
    results = claims_of(*fake_runs([0.1, 0.75, 0.8], [0.1, 0.5, 0.6, 0.75, 0.81], [0.1, 0.3, 0.5]))
    ratio = results.get("time_to_target_ratio_vs_fft")
    # FeDeRA: 1 round of 1 s + 0.008 s of links; FFT: 3 rounds of 1 s + 0.8 s of links.
    assert ratio.verdict == "met" and ratio.ours == pytest.approx(1.008 / 5.4)
    assert results.get("time_to_target_ratio_vs_fft_compute_only").ours == pytest.approx(1 / 3)
    assert results.get("accuracy_gap_to_fft").verdict == "met"  # 0.81 vs 0.80
    assert results.get("accuracy_gain_over_lora").ours == pytest.approx(0.3)


def test_the_headline_misses_when_federa_is_slow_or_worse_and_never_hides_a_miss():
    results = claims_of(*fake_runs([0.1, 0.5, 0.6, 0.65], [0.1, 0.75, 0.9], [0.1, 0.5, 0.7]))
    assert results.get("time_to_target_ratio_vs_fft").verdict == "missed"  # FeDeRA never reached it
    assert results.get("accuracy_gap_to_fft").verdict == "missed"
    assert results.get("accuracy_gain_over_lora").verdict == "missed"


def test_one_seed_that_never_reaches_the_target_makes_the_time_claim_a_miss():
    runs, design = fake_runs([0.1, 0.75, 0.8], [0.1, 0.5, 0.6, 0.75, 0.81], [0.1, 0.3, 0.5])
    for row in runs.get("federa", 0.5, 2, 1e-3)[1:]:
        row["val_acc"] = 0.6  # seed 2 never gets there; seeds 0 and 1 are fast
    results = claims_of(runs, design)
    ratio = results.get("time_to_target_ratio_vs_fft")
    assert ratio.verdict == "missed" and "2 of 3 seeds reached" in ratio.reason
    assert results.get("rounds_to_target_federa").ours is None
