"""The claims schema, the measurement helper and each paper's headline logic (verdicts computed, can fail)."""

import json

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from replab import claims
from replab.claims import Claim, PaperResults, PaperValue, Target, claim
from replab.measure import Spread, machine, repeat


def test_verdicts_follow_the_target():
    assert claim("a", "x", 0.96, scale="s", method="paper", target=(">=", 0.95)).verdict == "met"
    assert claim("a", "x", 0.94, scale="s", method="paper", target=(">=", 0.95)).verdict == "missed"
    assert claim("a", "x", 1.03, scale="s", method="paper", target=("<=", 1.02)).verdict == "missed"
    assert claim("a", "x", [1, 2, 3], scale="s", method="paper", target=("==", [1, 2, 3])).verdict == "met"
    assert claim("a", "x", [1, 3, 4], scale="s", method="paper", target=("==", [1, 2, 3])).verdict == "missed"


def test_no_target_or_no_value_is_na_with_a_reason():
    c = claim("a", "x", 0.5, scale="s", method="stand-in")
    assert c.verdict == "n/a" and "no target" in c.reason
    c = claim("a", "x", float("nan"), scale="s", method="paper")
    assert c.verdict == "n/a" and c.ours is None and c.reason


def test_a_value_that_was_not_reached_misses_its_target():
    c = claim("a", "x", float("inf"), scale="s", method="paper", target=(">=", 1))
    assert c.verdict == "missed" and c.ours is None and "no value" in c.reason


def test_the_value_is_judged_as_measured():
    assert claim("a", "x", 0.9499996, scale="s", method="paper", target=(">=", 0.95)).verdict == "missed"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"verdict": "n/a"}, "needs its reason"),
        ({"verdict": "met"}, "give 'n/a'"),
        ({"verdict": "met", "ours": 0.1, "target": {"op": ">=", "level": 0.95}}, "give 'missed'"),
        ({"verdict": "met", "ours": None, "target": {"op": ">=", "level": 0.95}}, "give 'missed'"),
        ({"verdict": "n/a", "reason": "r", "timing": True}, "names the machine"),
        ({"verdict": "n/a", "reason": "r", "key": "Bad Key"}, "pattern"),
    ],
)
def test_inconsistent_claims_are_refused(fields, message):
    base = {"key": "a", "metric": "x", "ours": 1.0, "scale": "s", "method": "paper"}
    with pytest.raises(ValidationError, match=message):
        Claim(**{**base, **fields})


def test_save_splits_scalars_timings_and_claims(tmp_path):
    m = machine()
    results = PaperResults(
        paper="toy",
        profile="tiny",
        scale={"n": 3},
        claims=[
            claim(
                "acc",
                "accuracy",
                0.9,
                scale="s",
                method="paper",
                target=(">=", 0.8),
                paper=PaperValue(value=0.95, source="Table 2"),
            ),
            claim("levels", "levels", [1, 2], scale="s", method="paper", target=("==", [1, 2])),
            claim(
                "speedup",
                "speed-up",
                2.5,
                scale="s",
                method="reconstruction",
                target=(">=", 2),
                timing=True,
                machine=m,
                spread=Spread.of([2.4, 2.5, 2.7]),
            ),
        ],
        timings={"train_s": 1.23456, "load": 0.5},
    )
    paths = claims.save(results, tmp_path)
    metrics = json.loads(paths["metrics"].read_text())
    assert metrics == {"acc": 0.9, "targets_met": 2, "targets_missed": 0}  # scalars only, at top level
    timing = json.loads(paths["timing"].read_text())
    assert timing["speedup"] == 2.5 and timing["train_s"] == 1.235 and timing["load_s"] == 0.5
    assert timing["cores"] == m.cores and timing["torch"] == m.torch and timing["targets_met"] == 1
    # What changes between runs (timing claims, timings, machine) stays out of the claims file.
    body = paths["claims"].read_text()
    assert "speedup" not in body and "train_s" not in body and m.cpu not in body
    assert "speedup" in paths["timing_claims"].read_text()
    assert claims.load(paths["claims"]) == results
    paths["claims"].write_text('{"paper": "toy"}')
    with pytest.raises(claims.ClaimsFileError, match="not a valid claims file"):
        claims.load(paths["claims"])


def test_duplicate_claim_keys_are_refused():
    c = claim("a", "x", 1.0, scale="s", method="paper")
    with pytest.raises(ValidationError, match="repeated"):
        PaperResults(paper="p", profile="tiny", scale={}, claims=[c, c])


def test_repeat_interleaves_arms_and_rotates_the_order():
    order = []
    runs = repeat(
        {"a": lambda: order.append("a") or 1, "b": lambda: order.append("b") or 2},
        3,
        measure=lambda result, seconds: result,
    )
    assert order == ["a", "b", "b", "a", "a", "b"]
    assert runs.spreads["a"].median == 1 and runs.ratio("b", "a").values == [2.0, 2.0, 2.0]
    assert runs.machine.cores >= 1
    with pytest.raises(ValueError):
        repeat({"a": lambda: None}, 0)
    s = Spread.of([3.0, 1.0, 2.0])
    assert (s.median, s.low, s.high) == (2.0, 1.0, 3.0)


def test_target_refuses_non_numbers():
    with pytest.raises(ValueError, match="needs numbers"):
        Target(op=">=", level=1).holds("fast")


# Each paper's headline, on inputs made to pass and to fail its targets.


def _spca_inputs(overlap):
    from replab.spectral.experiments import MethodResult, OscillatorResult, SphereResult, UndersamplingResult

    method = lambda o: MethodResult(np.zeros((3, 4)), np.ones(3), overlap=list(o), spectrum_error=0.1)  # noqa: E731
    main = UndersamplingResult(
        np.ones(3),
        np.zeros((3, 4)),
        {m: method(overlap) for m in ("spca_l2", "spca_s2", "coarse_pca", "fine_pca")},
        np.ones(4),
        4,
    )
    osc = OscillatorResult(31, 62.0, 4.0, 0.1, np.zeros(10), np.zeros(10), [1, 2, 3, 4], np.zeros((1, 2, 2)), [1.0])
    sphere = lambda kind, levels: SphereResult(2, kind, 162, np.zeros(16), levels, np.zeros((1, 3)), np.zeros(1))  # noqa: E731
    return main, osc, {"cotangent": sphere("cotangent", [1, 3, 5, 7]), "graph": sphere("graph", [1, 3, 5, 3, 4])}


@pytest.mark.parametrize(
    ("overlap", "spca", "coarse"), [([0.97, 0.96], "met", "missed"), ([0.8, 0.7], "missed", "met")]
)
def test_schrodinger_pca_headline(overlap, spca, coarse):
    from replab.spectral.headline import headline

    main, osc, spheres = _spca_inputs(overlap)
    results = headline(main, osc, spheres, profile="tiny", scale={"grid": "31x31"}, interpolation="cubic")
    assert results.get("spca_min_overlap").verdict == spca
    assert results.get("coarse_pca_max_overlap").verdict == coarse
    assert results.get("oscillator_degeneracies").verdict == "met"
    assert results.get("icosphere_multiplicities").paper.value == [1, 3, 5, 7]
    assert all(c.paper is None or c.paper.source for c in results.claims)


@pytest.mark.parametrize(("pac", "pac_spread", "verdict"), [(80, (78, 78), "met"), (78, (70, 80), "missed")])
def test_pac_headline_judges_pac_against_kmeans(pac, pac_spread, verdict):
    from replab.clustering.headline import headline

    rows = [
        {"dataset": d, "method": m, "seed": s, "acc": a, "nmi": 0, "ari": 0}
        for d in ("digits", "wordnet_minilm")
        for m, a in (("PAC (cosine, m=1.03)", pac), ("k-means (n_init=10)", 79))
        for s in (0, 1)
    ]
    spread = pd.DataFrame(
        [{"method": "PAC (cosine, m=1.03)", "seed": s, "acc": a} for s, a in enumerate(pac_spread)]
        + [{"method": "k-means (n_init=1)", "seed": s, "acc": a} for s, a in ((0, 74), (1, 78))]
    )
    deep = {
        "DPAC head": {"acc": 50.0},
        "PAC on DPAC features": {"acc": 60.0},
        "k-means on DPAC features": {"acc": 55.0},
    }
    collapse = {"fcm_mean_centre_distance": 1e-6, "kmeans_mean_centre_distance": 1.0}
    results = headline(
        pd.DataFrame(rows), spread, deep, collapse, profile="tiny", scale={"n_digits": 4}, dpac_scale="tiny"
    )
    assert results.get("pac_minus_kmeans_acc_digits").verdict == verdict
    assert results.get("pac_over_kmeans1_acc_std_digits").verdict == verdict
    assert results.get("pac_minus_kmeans_on_dpac_features").verdict == "met"
    assert results.get("pac_minus_kmeans_on_dpac_features").paper.value == 10.3
    assert results.get("dpac_head_acc").paper.value == 93.4 and results.get("dpac_head_acc").verdict == "n/a"
    assert results.get("kmeans_acc_digits").method == "baseline"
    assert "dpac_gain_over_kmeans_same_features" not in {c.key for c in results.claims}  # no frozen run: no claim


@pytest.mark.parametrize(("heads", "verdict", "best"), [((75.0, 78.5), "met", "b"), ((75.0, 71.9), "missed", "a")])
def test_pac_headline_judges_the_best_frozen_setting(heads, verdict, best):
    from replab.clustering.frozen import BASELINES, summarise
    from replab.clustering.headline import headline

    rows = [
        {"setting": name, "method": method, "seed": seed, "acc": acc}
        for name, head in zip("ab", heads)
        for seed in (0, 1)
        for method, acc in zip(["DPAC head", *BASELINES], [head, 70.0, 76.0, 73.0, 65.0])
    ]
    deep = {k: {"acc": 50.0} for k in ("DPAC head", "PAC on DPAC features", "k-means on DPAC features")}
    offline = pd.DataFrame([{"dataset": "digits", "method": "k-means (n_init=10)", "seed": 0, "acc": 79}])
    spread = pd.DataFrame([{"method": m, "seed": 0, "acc": 70} for m in ("PAC (cosine, m=1.03)", "k-means (n_init=1)")])
    collapse = {"fcm_mean_centre_distance": 1e-6, "kmeans_mean_centre_distance": 1.0}
    frozen = summarise(pd.DataFrame(rows))
    results = headline(
        offline,
        spread,
        deep,
        collapse,
        profile="tiny",
        scale={},
        dpac_scale="tiny",
        frozen=frozen,
        frozen_scales={"a": "A", "b": "B"},
    )
    gain = results.get("dpac_gain_over_kmeans_same_features")
    # The baseline is the strongest k-means (76, standardised), not the weaker ones (70, 73).
    assert gain.verdict == verdict and gain.ours == pytest.approx(max(heads) - 76.0)
    assert f"setting {best}" in gain.scale and gain.paper.value == 16.6
    over_pac = results.get("dpac_gain_over_pac_same_features")
    assert over_pac.ours == pytest.approx(max(heads) - 65.0) and over_pac.verdict == "n/a"


def _accept(
    speedup, *, emulated=True, bound=False, missing=False, final=1.05, control=1.3, noise_layer=0.5, slope_t=-3.0
):
    from replab.edge.ablation import Speedup
    from replab.edge.accept_headline import SPEEDUPS, headline

    curve = [
        {"measurements": n, "layer_within_10pct": w, "within_10pct": 0.3} for n, w in ((20, 0.45), (0, 0.2), (40, 0.1))
    ]
    codec = {"fraction_of_copy": 0.6, "fraction_values": [0.5, 0.6, 0.7], "backend": "c"}
    eager = {"fraction_of_copy": 0.05, "fraction_values": [0.05, 0.05, 0.06], "backend": "torch"}
    ratios = Spread.of(speedup)
    speedups = {key: Speedup(ratios.median, ratios, bound, missing) for key, *_ in SPEEDUPS}
    return headline(
        emulated=emulated,
        speedups=speedups,
        settings_run=["all_20", "mixed"],
        target_loss=1.5,
        bits=4,
        final_loss_ratio=final,
        final_loss_per_seed=Spread.of([final, final]),
        control_loss_ratio=control,
        control_loss_per_seed=Spread.of([control, control]),
        slope={"slope": -0.02, "se": 0.005, "t": slope_t, "steps": 8},
        predictor_curve=curve,
        max_measurements=20,
        noise={"layer": noise_layer, "direction": 0.2, "repeats": 5},
        scaling_baseline={"layer": 0.4, "direction": 0.25},
        codec=codec,
        codec_eager=eager,
        peak_rss_mb=400.0,
        machine=machine(),
        profile="tiny",
        scale={"devices": "3"},
    )


@pytest.mark.parametrize(("speedup", "verdict"), [([3.1, 3.5, 3.2], "met"), ([2.5, 3.5, 2.9], "missed")])
def test_accept_headline(speedup, verdict):
    results = _accept(speedup)
    headline_speedup = results.get("speedup_vs_baseline")
    assert headline_speedup.verdict == verdict and headline_speedup.paper.source == "abstract"
    assert headline_speedup.timing and headline_speedup.machine
    assert results.get("speedup_vs_pipeedge").verdict == "met"  # >= 2 for both inputs
    assert results.get("speedup_partition_only_mixed").verdict == "met"
    assert results.get("speedup_compression_only").verdict == "n/a"  # a share, reported without a target
    assert results.get("final_loss_ratio").verdict == "missed"
    assert results.get("control_2bit_loss_ratio").verdict == "met"
    assert results.get("baseline_loss_slope_t").verdict == "met"
    # The row with the most measurements up to 20, wherever it sits in the list; the level follows the noise.
    predictor = results.get("predictor_within_10pct_unseen")
    assert predictor.ours == 0.45 and predictor.target.level == pytest.approx(0.5 / 1.2) and predictor.verdict == "met"
    assert results.get("codec_vs_copy_cpu").verdict == "met"
    assert results.get("codec_vs_copy_cpu").spread.values == [0.5, 0.6, 0.7]


def test_accept_claims_fail_where_they_should():
    results = _accept([3.5, 3.6, 3.7], control=1.01, noise_layer=0.95, slope_t=-0.5, final=1.01)
    assert results.get("control_2bit_loss_ratio").verdict == "missed"  # the task cannot show harm
    assert results.get("baseline_loss_slope_t").verdict == "missed"  # no longer improving
    # ... so a loss ratio near 1 proves nothing: not judged, with the reason.
    final = results.get("final_loss_ratio")
    assert final.verdict == "n/a" and "cannot show harm" in final.reason and final.ours == 1.01
    assert _accept([3.5], slope_t=-0.5).get("final_loss_ratio").verdict == "n/a"
    assert _accept([3.5], final=1.01).get("final_loss_ratio").verdict == "met"
    predictor = results.get("predictor_within_10pct_unseen")
    assert predictor.target.level == 0.9 and predictor.verdict == "missed"


def test_accept_speedup_is_not_judged_without_emulation_or_on_a_low_lower_bound():
    not_emulated = _accept([3.5, 3.6, 3.7], emulated=False).get("speedup_vs_baseline")
    assert not_emulated.ours is None and "not emulated" in not_emulated.reason and not_emulated.verdict == "n/a"
    # A lower bound below the target stays a miss; above it, the bound is enough.
    low_bound = _accept([1.5, 1.6, 1.7], bound=True).get("speedup_vs_baseline")
    assert low_bound.verdict == "missed" and "lower bound" in low_bound.note
    assert _accept([3.5, 3.6, 3.7], bound=True).get("speedup_vs_baseline").verdict == "met"
    never = _accept([0.0, 0.0, 0.0], bound=True, missing=True).get("speedup_vs_baseline")
    assert never.verdict == "missed" and "never reached" in never.note


def test_accept_says_plainly_whether_adaptation_beats_the_scaling_rule():
    results = _accept([3.5])  # predictor 0.45 per layer, rule 0.40; noise 0.5 per layer
    gain = results.get("predictor_gain_layer")
    assert gain.ours == pytest.approx(0.05) and "adaptation beats" in gain.reason and gain.note == ""
    worse = results.get("predictor_gain_direction")  # 0.3 against 0.25: beats, but the noise (0.2) is no floor
    assert "beats" in worse.reason and "no floor" in worse.note
