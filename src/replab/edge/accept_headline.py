"""AccEPT's claims from the notebook's results, judged against targets fixed here before the runs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..claims import PaperResults, PaperValue, Target, claim
from ..measure import Machine, Spread

TARGETS = {
    "speedup_time_to_loss": Target(op=">=", level=2.0),
    "final_loss_ratio": Target(op="<=", level=1.02),
    "predictor_layer_within_10pct": Target(op=">=", level=0.9),
    "codec_fraction_of_copy": Target(op=">=", level=0.5),
}
ABSTRACT = PaperValue(value="up to 3x", source="abstract", note="real edge devices")
NN_METER = "nn-Meter (MobiSys 2021, another paper) reports ~99 % within ±10 % for inference latency"


def headline(
    *,
    speedup: Spread,
    target_loss: float,
    lower_bound_rounds: int,
    speedup_run_derived: Spread,
    run_derived_loss: float,
    emulated: bool,
    per_step_speedup: Spread,
    final_loss_ratio: float,
    predictor_curve: Sequence[Mapping[str, float]],
    max_measurements: int,
    codec: Mapping[str, float],
    bits: int,
    machine: Machine,
    profile: str,
    scale: Mapping[str, object],
    timings: Mapping[str, float] | None = None,
) -> PaperResults:
    """``speedup``: per-round ratios from :func:`~replab.edge.experiments.speedups_to_loss`.
    ``predictor_curve``: rows with ``measurements``, ``layer_within_10pct``, ``within_10pct``; the headline is
    the row with the most measurements up to ``max_measurements`` (not the list's last). ``codec``: the
    compression table's row for ``bits``."""
    eligible = [r for r in predictor_curve if r["measurements"] <= max_measurements]
    if not eligible:
        raise ValueError(f"no predictor measurement count <= {max_measurements}")
    row = max(eligible, key=lambda r: r["measurements"])
    where = "emulated devices" if emulated else "loopback, no caps"
    cluster = f"{scale.get('devices')}, {scale.get('model')}, {scale.get('steps')} steps, {where}"
    repeats = len(speedup.values)
    bound = (
        f"; in {lower_bound_rounds} round(s) the baseline never got there: a lower bound" if lower_bound_rounds else ""
    )
    codec_spread = Spread.of(list(codec["fraction_values"]))
    speedup_target: Target | None = TARGETS["speedup_time_to_loss"]
    why = ""
    if not emulated:  # shared loopback, no caps: nothing like the devices the claim is about
        speedup_target, why = None, "not judged: devices not emulated (needs root), so no CPU caps or shaped links"
    elif lower_bound_rounds and not speedup_target.holds(speedup.median):
        speedup_target, why = None, "inconclusive: a lower bound below the target (the baseline never got there)"

    def timed_ratio(key: str, metric: str, spread: Spread, **kwargs):
        """A speed-up measured over the rounds: its median, with the spread and the machine."""
        return claim(
            key,
            metric,
            spread.median,
            unit="x",
            scale=cluster,
            method="reconstruction",
            timing=True,
            machine=machine,
            spread=spread,
            **kwargs,
        )

    claims = [
        timed_ratio(
            "speedup_time_to_loss",
            "time to a fixed loss: even split + fp32 over DP split on predicted times + "
            f"{bits}-bit (median of per-round ratios)",
            speedup,
            target=speedup_target,
            reason=why,
            paper=ABSTRACT,
            note=f"{repeats} interleaved round(s); time to a 3-step mean loss of {target_loss:g}, a level set in "
            "params.yaml, not by this run's code: read off the earlier laptop run with the same seed (so the same loss "
            "curves); the original run-derived definition is reported beside it" + bound,
        ),
        timed_ratio(
            "speedup_time_to_loss_run_derived",
            "the same speed-up with the original definition of the fixed loss: 5 % above the higher final loss of "
            "the first round's two runs",
            speedup_run_derived,
            reason=f"kept beside the headline: that loss ({run_derived_loss:.3g}) was derived from the runs it judges",
        ),
        timed_ratio(
            "per_step_speedup",
            "per-step speed-up over the whole run (median of rounds)",
            per_step_speedup,
            reason="no target: shown beside the time to loss",
        ),
        claim(
            "final_loss_ratio",
            "final training loss, AccEPT / baseline (3-step means)",
            final_loss_ratio,
            scale=cluster,
            method="reconstruction",
            target=TARGETS["final_loss_ratio"],
        ),
        claim(
            "predictor_layer_within_10pct",
            "latency predictor on the unseen device: share of layers (forward + "
            f"backward) within ±10 % after {row['measurements']} measurements",
            row["layer_within_10pct"],
            scale="shipped profiles, 30 % of layer configurations held out",
            method="reconstruction",
            target=TARGETS["predictor_layer_within_10pct"],
            note=NN_METER,
        ),
        claim(
            "predictor_direction_within_10pct",
            "the same, forward and backward counted separately",
            row["within_10pct"],
            scale="shipped profiles",
            method="reconstruction",
            reason="no target: the stricter per-direction view, shown beside the per-layer one",
        ),
        claim(
            "codec_fraction_of_copy",
            f"{bits}-bit pack + unpack throughput / memory copy, CPU torch path",
            codec["fraction_of_copy"],
            scale=f"{int(codec.get('numel', 0)):,} fp32 values, one process",
            method="reconstruction",
            target=TARGETS["codec_fraction_of_copy"],
            timing=True,
            machine=machine,
            spread=codec_spread,
        ),
    ]
    return PaperResults(paper="accept", profile=profile, scale=dict(scale), claims=claims, timings=dict(timings or {}))
