import math

import numpy as np
import pytest

from replab.edge import ablation as ab
from replab.edge.pipeline import PipelineConfig
from replab.edge.planner import Plan


def _row(arm, seed, losses, seconds_per_step, setting="all_20"):
    return {
        "setting": setting,
        "arm": arm,
        "seed": seed,
        "losses": list(losses),
        "step_seconds": [seconds_per_step * (i + 1) for i in range(len(losses))],
        "ranks": [],
    }


FALLING = [3, 2.5, 2, 1.5, 1.2, 1.0, 0.9]


def test_speedup_is_the_ratio_of_median_times_with_per_seed_spread():
    rows = [_row("baseline", s, FALLING, t) for s, t in enumerate((3.0, 2.0, 4.0))]
    rows += [_row("accept", s, FALLING, t) for s, t in enumerate((1.0, 1.0, 1.0))]
    result = ab.speedup(rows, "all_20", "baseline", "accept", target=1.5)
    assert result.value == pytest.approx(3.0)  # both reach it at step 6: median 3.0 s/step over 1.0
    assert result.per_seed.values == pytest.approx([3.0, 2.0, 4.0])
    assert not result.bound and not result.missing


def test_an_arm_that_never_gets_there_is_a_bound_or_a_zero():
    stuck = [3.0] * 7
    rows = [_row("baseline", 0, stuck, 2.0), _row("accept", 0, FALLING, 1.0)]
    bound = ab.speedup(rows, "all_20", "baseline", "accept", target=1.5)
    assert bound.bound and bound.value == pytest.approx(14.0 / 6.0)  # the whole baseline run stands in
    rows = [_row("baseline", 0, FALLING, 2.0), _row("accept", 0, stuck, 1.0)]
    assert ab.speedup(rows, "all_20", "baseline", "accept", target=1.5).value == 0.0
    with pytest.raises(ValueError, match="same seeds"):
        ab.speedup(
            [_row("baseline", 0, FALLING, 1), _row("accept", 1, FALLING, 1)], "all_20", "baseline", "accept", 1.5
        )


def test_time_to_loss_uses_the_moving_mean():
    assert ab.time_to_loss([3, 1, 3, 1, 1, 1], [1, 2, 3, 4, 5, 6], target=1.0) == 6.0
    assert math.isinf(ab.time_to_loss([3, 3, 3], [1, 2, 3], target=1.0))


def test_final_loss_ratio_at_equal_steps_over_seeds():
    rows = [_row("baseline", s, [2, 1, 1, 1], 1) for s in range(2)]
    rows += [_row("accept", 0, [2, 1.1, 1.1, 1.1], 1), _row("accept", 1, [2, 1.3, 1.3, 1.3], 1)]
    assert ab.final_loss_ratio(rows, "all_20", "accept", "baseline") == pytest.approx(1.2)


def test_loss_slope_tells_a_falling_run_from_a_plateau():
    rng = np.random.default_rng(0)
    steps = np.arange(50)
    falling = [_row("baseline", s, 3 - 0.03 * steps + 0.01 * rng.standard_normal(50), 1) for s in range(3)]
    flat = [_row("baseline", s, 1 + 0.05 * rng.standard_normal(50), 1) for s in range(3)]
    assert ab.loss_slope(falling, "all_20", "baseline")["t"] < -10
    assert ab.loss_slope(flat, "all_20", "baseline")["t"] > -2


def test_grid_uses_the_same_seeds_in_every_arm_and_shuffles_the_order():
    plan = Plan("even", (0, 2), None, (0.1, 0.1), (0.0, 0.01), 0.1, 0.5)
    settings = {"all_20": {"even": plan, "dp_predicted": plan, "dp_predicted_fp32": plan, "dp_measured_fp32": plan}}
    calls = []

    def run(setting, config, tag):
        calls.append((config.seed, tag.split("-")[1], config.bits))
        return {"losses": [1.0], "step_seconds": [1.0], "ranks": []}

    base = PipelineConfig(starts=[0], model={"n_blocks": 2})
    rows = ab.run_grid(settings, ab.arms(4), base, [0, 1], run)
    assert len(rows) == 12 and {r["seed"] for r in rows} == {0, 1}
    first = [arm for seed, arm, _ in calls if seed == 0]
    second = [arm for seed, arm, _ in calls if seed == 1]
    assert sorted(first) == sorted(second) == sorted(ab.arms(4)) and first != second
    bits = {arm: b for _, arm, b in calls}
    assert bits["baseline"] is None and bits["accept"] == 4 and bits["control_2bit"] == 2


def test_measured_stage_times_skip_the_first_step():
    rank = {"rank": 0, "forward_s": [9.0] + [0.001] * 4, "backward_s": [0.002] * 4, "peak_rss_mb": 5, "rss_start_mb": 1}
    row = {**_row("accept", 0, [1.0, 1.0], 1), "ranks": [rank]}
    row["ranks"][0]["forward_s"] = [9.0, 9.0, 9.0] + [0.001] * 2  # first step (2 micro-batches) is slow
    row["ranks"][0]["backward_s"] = [9.0, 9.0] + [0.002] * 2
    assert ab.measured_stage_ms([row], "all_20", "accept", n_micro=2) == [pytest.approx(3.0)]
    assert ab.peak_memory([row], "all_20", "accept") == [{"stage": 0, "peak_rss_mb": 5, "model_mb": 4}]


def test_per_seed_loss_ratios_and_step_times():
    rows = [_row("baseline", s, [2, 1, 1, 1], 1) for s in range(2)]
    rows += [_row("accept", 0, [2, 1.1, 1.1, 1.1], 0.5), _row("accept", 1, [2, 1.3, 1.3, 1.3], 0.5)]
    assert ab.loss_ratio_per_seed(rows, "all_20", "accept", "baseline").values == pytest.approx([1.1, 1.3])
    assert ab.measured_step_s(rows, "all_20", "accept") == pytest.approx(0.5)
