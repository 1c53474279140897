"""FeDeRA's claims: what the notebook's runs mean, judged against targets fixed here (the issue's, set before
any run) and the paper's published numbers."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from ..claims import PaperResults, PaperValue, Target, claim
from ..measure import Machine, Spread
from . import experiment as ex
from .params import HEADLINE_METHODS

TARGETS = {
    "time_to_target_ratio_vs_fft": Target(op="<=", level=0.25),
    "accuracy_gap_to_fft": Target(op="<=", level=0.02),
    "accuracy_gain_over_lora": Target(op=">=", level=0.0),
}
PAPER_TIME = PaperValue(
    value=0.041,
    source="abstract: 95.9 / 97.9 / 96.9 % less time to target than FFT (RoBERTa), 97.3 / 96.5 / 96.5 % "
    "(DeBERTaV3), Jetson AGX Orin",
    note="the smallest reduction as a ratio, 1 - 0.959",
)
PAPER_SHARE = PaperValue(value=0.01, source="abstract: ~1 % of the parameters trainable")


def seed_rows(runs: ex.Runs, design: ex.Design, chosen: Mapping[str, float], level: float, link_mbit: float):
    """Per seed and headline method at the headline alpha: the validation-selected round, its test accuracy,
    and the time to ``level`` on compute alone and with the links."""
    out = []
    for k in range(design.seeds):
        seed = design.first_seed + k
        for method in design.headline_methods:
            rows = runs.get(method, design.headline_alpha, seed, chosen[method])
            best = ex.best_validation(rows)
            out.append(
                {
                    "seed": seed,
                    "method": method,
                    "lr": chosen[method],
                    "selected_round": best["round"],
                    "val_acc": best["val_acc"],
                    "test_acc": best["test_acc"],
                    "rounds_to_target": ex.rounds_to_target(rows, level),
                    "time_to_target_compute_s": ex.time_to_target(rows, level, None),
                    "time_to_target_s": ex.time_to_target(rows, level, link_mbit),
                }
            )
    return out


def _by_seed(rows: list[dict], method: str, key: str) -> np.ndarray:
    return np.array([r[key] for r in sorted(rows, key=lambda r: r["seed"]) if r["method"] == method], dtype=float)


def _ratios(rows: list[dict], key: str) -> list[float]:
    return [ex.ratio(a, b) for a, b in zip(_by_seed(rows, "federa", key), _by_seed(rows, "fft", key))]


def _median(values) -> float:
    """Median over seeds, only when every seed has a finite value: a seed that never reached the target (inf)
    or has no ratio (nan) makes the whole figure a miss (inf) rather than being outvoted by the others."""
    values = [float(v) for v in values]
    if not values or any(math.isnan(v) for v in values):
        return math.nan
    return float(np.median(values)) if all(math.isfinite(v) for v in values) else math.inf


def _reached(values) -> str:
    values = [float(v) for v in values]
    return f"{sum(math.isfinite(v) for v in values)} of {len(values)} seeds reached the target"


def _spread(values) -> Spread | None:
    values = [float(v) for v in values]
    return Spread.of(values) if len(values) > 1 and all(math.isfinite(v) for v in values) else None


def headline(
    per_seed: list[dict],
    *,
    level: float,
    link_mbit: float,
    link_device: str,
    trainable_share: Mapping[str, float],
    bytes_per_round: Mapping[str, tuple[int, int]],
    factor_error_vs_update: float,
    noniid_drop: Mapping[str, float],
    machine: Machine,
    profile: str,
    scale: Mapping[str, object],
    timings: Mapping[str, float] | None = None,
) -> PaperResults:
    """The headline claims of one run of the notebook. ``per_seed``: :func:`seed_rows`; ``bytes_per_round``:
    per method, (download, upload) bytes per client per round; ``noniid_drop``: per method, test accuracy at
    the largest alpha minus at the smallest (empty when one alpha ran)."""
    missing = sorted(set(HEADLINE_METHODS) - {r["method"] for r in per_seed})
    if missing:
        raise ValueError(f"per-seed rows lack the headline methods {missing}")
    seeds = len(_by_seed(per_seed, "fft", "test_acc"))
    where = f"alpha {scale.get('headline_alpha')}, {seeds} seed(s)"
    text = ", ".join(f"{k} {v}" for k, v in scale.items())
    with_links, compute = _ratios(per_seed, "time_to_target_s"), _ratios(per_seed, "time_to_target_compute_s")
    gap = _by_seed(per_seed, "fft", "test_acc") - _by_seed(per_seed, "federa", "test_acc")
    gain = _by_seed(per_seed, "federa", "test_acc") - _by_seed(per_seed, "lora", "test_acc")
    reached = f"validation accuracy {level:g} (fixed before the run)"
    federa_best = ", ".join(f"{v:.3g}" for v in _by_seed(per_seed, "federa", "val_acc"))
    fft_best = ", ".join(f"{v:.3g}" for v in _by_seed(per_seed, "fft", "val_acc"))
    best_note = f"best validation accuracy per seed: FeDeRA {federa_best}; FFT {fft_best}"
    unreached = (
        f"not reached within the run's {scale.get('rounds', '')} rounds by every seed "
        f"({_reached(_by_seed(per_seed, 'federa', 'rounds_to_target'))} for FeDeRA, "
        f"{_reached(_by_seed(per_seed, 'fft', 'rounds_to_target'))} for FFT; {best_note})"
    )
    claims = [
        claim(
            "time_to_target_ratio_vs_fft",
            f"FeDeRA's time to {reached} / FFT's, compute + communication at {link_mbit:g} Mbit/s each way "
            f"({link_device}); median over seeds, {where}",
            _median(with_links),
            scale=text,
            method="paper",
            target=TARGETS["time_to_target_ratio_vs_fft"],
            paper=PAPER_TIME,
            reason="" if math.isfinite(_median(with_links)) else unreached,
            timing=True,
            machine=machine,
            spread=_spread(with_links),
            note="a round: slowest client's training + aggregation + its download and upload of the serialised "
            f"state at the link rate; {best_note}",
        ),
        claim(
            "time_to_target_ratio_vs_fft_compute_only",
            f"FeDeRA's time to {reached} / FFT's, compute alone (training + aggregation); median, {where}",
            _median(compute),
            scale=text,
            method="paper",
            timing=True,
            machine=machine,
            spread=_spread(compute),
            reason=(
                "no target: shown beside the figure with communication, which the target judges"
                if math.isfinite(_median(compute))
                else unreached
            ),  # fmt: skip
        ),
        claim(
            "accuracy_gap_to_fft",
            f"FFT minus FeDeRA test accuracy at each run's validation-selected round; mean, {where}",
            float(np.mean(gap)),
            scale=text,
            method="paper",
            target=TARGETS["accuracy_gap_to_fft"],
            spread=_spread(gap),
            note="the paper: FeDeRA matches or beats FFT (no single number)",
        ),
        claim(
            "accuracy_gain_over_lora",
            f"FeDeRA minus LoRA (default init) test accuracy, each at its validation-chosen rate; mean, {where}",
            float(np.mean(gain)),
            scale=text,
            method="paper",
            target=TARGETS["accuracy_gain_over_lora"],
            spread=_spread(gain),
        ),
    ]
    for method in HEADLINE_METHODS:
        acc = _by_seed(per_seed, method, "test_acc")
        claims.append(
            claim(
                f"{method}_test_accuracy",
                f"{method} test accuracy at the validation-selected round; mean, {where}",
                float(np.mean(acc)),
                scale=text,
                method="paper" if method == "federa" else "baseline",
                spread=_spread(acc),
            )
        )
    for method, name, role in (("federa", "FeDeRA", "paper"), ("fft", "FFT", "baseline")):
        rounds = _median(list(_by_seed(per_seed, method, "rounds_to_target")))
        claims.append(
            claim(
                f"rounds_to_target_{method}",
                f"rounds {name} needs to reach {reached}; median, {where}",
                rounds,
                scale=text,
                method=role,
                reason="" if math.isfinite(rounds) else unreached,
            )
        )
    claims += [
        claim(
            "trainable_share_federa",
            "FeDeRA's trainable share of the model's parameters (adapters + classifier head)",
            trainable_share["federa"],
            scale=text,
            method="paper",
            paper=PAPER_SHARE,
        ),
        claim(
            "upload_share_of_fft",
            "bytes a FeDeRA client uploads per round / an FFT client's (serialised Flower messages)",
            bytes_per_round["federa"][1] / bytes_per_round["fft"][1],
            scale=text,
            method="paper",
        ),
        claim(
            "factor_error_vs_update",
            "|mean(B) mean(A) - mean(BA)| / |mean(BA) - B0 A0|, FeDeRA, median over rounds (seed 0): the share of "
            "the averaged update that FedAvg of the factors distorts",
            factor_error_vs_update,
            scale=text,
            method="paper",
        ),
    ]
    if noniid_drop:
        claims.append(
            claim(
                "noniid_drop_fft_minus_federa",
                "test accuracy lost from the largest to the smallest alpha: FFT's loss minus FeDeRA's (> 0: FeDeRA "
                "degrades less), seed 0",
                noniid_drop["fft"] - noniid_drop["federa"],
                scale=text,
                method="paper",
                note="the paper: FeDeRA degrades less than the baselines as data get more non-IID",
            )
        )
    return PaperResults(
        paper="federa", profile=profile, scale=dict(scale), claims=claims, timings=dict(timings or {}),
        machine=machine,
    )  # fmt: skip
