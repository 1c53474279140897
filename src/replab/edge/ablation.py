"""AccEPT's ablation on the emulated cluster: {even, DP on predicted times} x {fp32, b-bit}, PipeEdge (DP on
measured times, fp32) and a 2-bit positive control, each run with the same seeds, arms interleaved.

Every figure is read from the runs' own logs: time to a loss fixed before the run, final loss at equal steps,
and the measured per-micro-batch compute of each stage (beside the planner's prediction).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from ..measure import Spread
from ..progress import say
from .pipeline import PipelineConfig
from .planner import Plan

ORDER_SEED = 20231110  # the arms' run order per round (not the training seeds)


@dataclass(frozen=True)
class Arm:
    """One way to train: which split (a :class:`Plan` name) and what crosses the cuts."""

    plan: str
    bits: int | None
    label: str


def arms(bits: int) -> dict[str, Arm]:
    """The ablation's arms, baseline first. The 2-bit control keeps AccEPT's split so only the bits change."""
    return {
        "baseline": Arm("even", None, "even split, fp32"),
        "compression_only": Arm("even", bits, f"even split, {bits}-bit"),
        "partition_only": Arm("dp_predicted_fp32", None, "DP on predicted times, fp32"),
        "accept": Arm("dp_predicted", bits, f"AccEPT: DP on predicted times, {bits}-bit"),
        "pipeedge": Arm("dp_measured_fp32", None, "PipeEdge: DP on measured times, fp32"),
        "control_2bit": Arm("dp_predicted", 2, "control: AccEPT's split, 2-bit"),
    }


def run_grid(
    settings: Mapping[str, Mapping[str, Plan]],
    arm_specs: Mapping[str, Arm],
    base: PipelineConfig,
    seeds: Sequence[int],
    run: Callable[[str, PipelineConfig, str], dict],
) -> list[dict]:
    """Train every (setting, arm) once per seed. Round r uses seed ``seeds[r]`` in every arm, in an order
    shuffled per round (fixed generator), so no arm always runs first or beside the same neighbours.
    ``run(setting, config, tag)`` trains one config on the setting's cluster and returns
    :func:`~replab.edge.pipeline.launch`'s result."""
    cells = [(s, a) for s in settings for a in arm_specs]
    rows = []
    for r, seed in enumerate(seeds):
        order = np.random.default_rng([ORDER_SEED, r]).permutation(len(cells))
        for i, (setting, name) in enumerate(cells[j] for j in order):
            arm = arm_specs[name]
            plan = settings[setting][arm.plan]
            config = replace(base, starts=list(plan.starts), bits=arm.bits, seed=seed)
            say(f"ablation: round {r + 1}/{len(seeds)} (seed {seed}), run {i + 1}/{len(cells)}: {setting}, {name}")
            result = run(setting, config, f"{setting}-{name}-seed{seed}")
            rows.append({"setting": setting, "arm": name, "seed": seed, "starts": list(plan.starts), **result})
    return rows


def time_to_loss(losses: Sequence[float], step_seconds: Sequence[float], target: float, window: int = 3) -> float:
    """Wall time at which the ``window``-step mean loss first reaches ``target`` (inf if never)."""
    smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
    hit = np.flatnonzero(smooth <= target)
    return float(step_seconds[hit[0] + window - 1]) if hit.size else math.inf


def final_loss(losses: Sequence[float], window: int = 3) -> float:
    return float(np.mean(losses[-window:]))


@dataclass(frozen=True)
class Speedup:
    """Median time to the target loss of ``slower`` over that of ``faster`` (ratio of medians), with the
    per-seed ratios. ``bound``: some run of ``slower`` never reached the target, its whole run standing in
    (the ratio is then a lower bound); ``missing``: some run of ``faster`` never did (ratio 0)."""

    value: float
    per_seed: Spread
    bound: bool
    missing: bool


def times_to_loss(rows: list[dict], setting: str, arm: str, target: float, window: int = 3) -> dict[int, float]:
    return {
        r["seed"]: time_to_loss(r["losses"], r["step_seconds"], target, window)
        for r in rows
        if r["setting"] == setting and r["arm"] == arm
    }


def speedup(rows: list[dict], setting: str, slower: str, faster: str, target: float, window: int = 3) -> Speedup:
    runs = {(r["arm"], r["seed"]): r for r in rows if r["setting"] == setting}
    t_slow = times_to_loss(rows, setting, slower, target, window)
    t_fast = times_to_loss(rows, setting, faster, target, window)
    seeds = sorted(t_slow)
    if not seeds or sorted(t_fast) != seeds:
        raise ValueError(f"{setting}: arms {slower} and {faster} need runs with the same seeds")
    bound = any(math.isinf(t_slow[s]) for s in seeds)
    missing = any(math.isinf(t_fast[s]) for s in seeds)
    # An arm that never got there: its whole run stands in (a lower bound on its time to the target).
    slow = [t_slow[s] if math.isfinite(t_slow[s]) else runs[(slower, s)]["step_seconds"][-1] for s in seeds]
    fast = [t_fast[s] for s in seeds]
    if missing:
        return Speedup(0.0, Spread.of([0.0] * len(seeds)), bound, True)
    ratios = [a / b for a, b in zip(slow, fast)]
    return Speedup(float(np.median(slow) / np.median(fast)), Spread.of(ratios), bound, False)


def final_loss_ratio(rows: list[dict], setting: str, arm: str, reference: str, window: int = 3) -> float:
    """Mean over seeds of ``arm``'s final loss over that of ``reference``'s (equal steps, same seeds)."""
    mean = lambda name: float(  # noqa: E731
        np.mean([final_loss(r["losses"], window) for r in rows if r["setting"] == setting and r["arm"] == name])
    )
    return mean(arm) / mean(reference)


def loss_ratio_per_seed(rows: list[dict], setting: str, arm: str, reference: str, window: int = 3) -> Spread:
    """Per seed, ``arm``'s final loss over ``reference``'s (the spread beside :func:`final_loss_ratio`)."""
    final = {(r["arm"], r["seed"]): final_loss(r["losses"], window) for r in rows if r["setting"] == setting}
    seeds = sorted(s for a, s in final if a == arm)
    return Spread.of([final[(arm, s)] / final[(reference, s)] for s in seeds])


def measured_step_s(rows: list[dict], setting: str, arm: str) -> float:
    """Median seconds per step over the arm's runs, the first step (warm-up) left out."""
    steps = [np.diff(r["step_seconds"]) for r in rows if r["setting"] == setting and r["arm"] == arm]
    return float(np.median(np.concatenate(steps))) if steps else math.nan


def loss_slope(rows: list[dict], setting: str, arm: str, tail: float = 0.2) -> dict:
    """Is the run still improving at its end? Least-squares slope of the seed-mean loss over the last ``tail``
    of the steps, its standard error, and their ratio ``t`` (clearly negative: still learning)."""
    curves = np.asarray([r["losses"] for r in rows if r["setting"] == setting and r["arm"] == arm])
    mean = curves.mean(axis=0)
    n = max(3, int(round(tail * len(mean))))
    y = mean[-n:]
    x = np.arange(len(mean) - n, len(mean), dtype=float)
    slope, intercept = np.polyfit(x, y, 1)
    resid = y - (slope * x + intercept)
    se = float(np.sqrt(np.sum(resid**2) / (n - 2) / np.sum((x - x.mean()) ** 2)))
    return {"slope": float(slope), "se": se, "t": float(slope / se) if se > 0 else -math.inf, "steps": n}


def measured_stage_ms(rows: list[dict], setting: str, arm: str, n_micro: int) -> list[float]:
    """Median measured compute (forward + backward) of each stage per micro-batch over the arm's runs, from
    the stages' clocks; the first step (warm-up, and the schedule's shape-inference pass) left out."""
    per_stage: dict[int, list[float]] = {}
    for r in rows:
        if r["setting"] != setting or r["arm"] != arm:
            continue
        keep = (len(r["losses"]) - 1) * n_micro
        for rank in r["ranks"]:
            f, b = rank["forward_s"][-keep:], rank["backward_s"][-keep:]
            per_stage.setdefault(rank["rank"], []).extend(x + y for x, y in zip(f, b))
    return [1e3 * float(np.median(per_stage[s])) for s in sorted(per_stage)]


def peak_memory(rows: list[dict], setting: str, arm: str) -> list[dict]:
    """Per stage: the largest peak RSS over the arm's runs, and the part above the rank's start (its model)."""
    out: dict[int, dict] = {}
    for r in rows:
        if r["setting"] != setting or r["arm"] != arm:
            continue
        for rank in r["ranks"]:
            row = out.setdefault(rank["rank"], {"stage": rank["rank"], "peak_rss_mb": 0.0, "model_mb": 0.0})
            row["peak_rss_mb"] = max(row["peak_rss_mb"], rank["peak_rss_mb"])
            row["model_mb"] = max(row["model_mb"], rank["peak_rss_mb"] - rank["rss_start_mb"])
    return [out[s] for s in sorted(out)]
