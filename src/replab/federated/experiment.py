"""The FeDeRA experiment: which runs, in which order, and what they mean.

One Flower simulation runs the whole plan (:func:`plan`, consumed lazily, so the learning rates chosen in the
tuning phase decide the later runs):

1. tuning, at the headline alpha with seed 0: every method at every learning rate of the same grid, the
   methods' order rotating per rate; each method keeps the rate with the best validation accuracy;
2. the headline seeds 1..S-1 at the headline alpha, headline methods only, order rotating per seed;
3. the other alphas, seed 0, every method at its chosen rate.

Time to a target accuracy: a round costs its slowest client's training plus the server's aggregation
(clients train in parallel on their own devices; central evaluation is not part of a round), and, with a
link rate, each client's download and upload of the serialised state at that rate, one after the other.
The target level is fixed in params.yaml before the runs; it is reached on validation accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np

from .flower import Spec


@dataclass(frozen=True)
class Design:
    """What the plan varies (every other setting comes from the base spec)."""

    methods: tuple[str, ...]
    headline_methods: tuple[str, ...]
    lr_grid: tuple[float, ...]
    alphas: tuple[float, ...]
    headline_alpha: float
    seeds: int
    first_seed: int = 0  # seeds first_seed .. first_seed + seeds - 1 (a pilot uses others than the report's)

    def __post_init__(self):
        if not set(self.headline_methods) <= set(self.methods):
            raise ValueError(f"headline methods {self.headline_methods} must all be in methods {self.methods}")
        if self.headline_alpha not in self.alphas:
            raise ValueError(f"headline_alpha {self.headline_alpha} must be one of alphas {self.alphas}")
        if not self.lr_grid or min(self.lr_grid) <= 0:
            raise ValueError(f"lr_grid must hold positive rates, got {self.lr_grid}")
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {self.seeds}")

    def n_runs(self) -> int:
        others = len(self.alphas) - 1
        return len(self.methods) * (len(self.lr_grid) + others) + len(self.headline_methods) * (self.seeds - 1)


def _rotated(items: Sequence, k: int) -> list:
    k %= len(items)
    return [*items[k:], *items[:k]]


class Runs:
    """The rows of every finished run, found by (method, alpha, seed, lr)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, float, int, float], list[dict]] = {}

    def add(self, spec: Spec, row: dict) -> None:
        self.rows.setdefault((spec.method, spec.alpha, spec.seed, spec.lr), []).append(row)

    def get(self, method: str, alpha: float, seed: int, lr: float) -> list[dict]:
        return self.rows[(method, alpha, seed, lr)]

    def best_lr(self, method: str, design: Design) -> float:
        """The grid rate with the best validation accuracy (any round) at the headline alpha and the first seed;
        the smaller rate on ties."""
        a0, s0 = design.headline_alpha, design.first_seed
        scores = [(best_validation(self.get(method, a0, s0, lr))["val_acc"], -lr) for lr in design.lr_grid]
        return -max(scores)[1]

    def chosen(self, design: Design) -> dict[str, float]:
        return {m: self.best_lr(m, design) for m in design.methods}


def plan(base: Spec, design: Design, runs: Runs) -> Iterator[Spec]:
    """The runs in order (see the module's docstring); reads ``runs`` after the tuning phase."""
    a0, s0 = design.headline_alpha, design.first_seed
    for i, lr in enumerate(design.lr_grid):
        for method in _rotated(design.methods, i):
            yield replace(base, method=method, alpha=a0, seed=s0, lr=lr)
    chosen = runs.chosen(design)
    for k in range(1, design.seeds):
        for method in _rotated(design.headline_methods, k):
            yield replace(base, method=method, alpha=a0, seed=s0 + k, lr=chosen[method])
    for alpha in (a for a in design.alphas if a != a0):
        for method in design.methods:
            yield replace(base, method=method, alpha=alpha, seed=s0, lr=chosen[method])


def best_validation(rows: list[dict]) -> dict:
    """The round to report: the best validation accuracy (the earliest round on ties)."""
    return max(rows, key=lambda r: (r["val_acc"], -r["round"]))


def round_seconds(row: dict, link_mbit: float | None) -> float:
    """One round's time: slowest client's training + aggregation, plus download and upload at ``link_mbit``."""
    if row["round"] == 0:
        return 0.0
    seconds = row["train_s_slowest"] + row["aggregation_s"]
    if link_mbit is not None:
        seconds += 8 * (row["download_bytes_per_client"] + row["upload_bytes_per_client"]) / (link_mbit * 1e6)
    return seconds


def elapsed(rows: list[dict], link_mbit: float | None) -> list[float]:
    """Cumulative time at the end of each round (round 0: 0)."""
    return list(np.cumsum([round_seconds(r, link_mbit) for r in rows]))


def time_to_target(rows: list[dict], level: float, link_mbit: float | None) -> float:
    """Time until validation accuracy first reaches ``level`` (inf if it never does)."""
    for row, t in zip(rows, elapsed(rows, link_mbit)):
        if row["val_acc"] >= level:
            return float(t)
    return math.inf


def rounds_to_target(rows: list[dict], level: float) -> float:
    return next((float(r["round"]) for r in rows if r["val_acc"] >= level), math.inf)


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator for times to target: inf when only the numerator's run never reached the
    target, nan when the denominator's did not (no ratio can be formed)."""
    if math.isinf(denominator):
        return math.nan
    return numerator / denominator if denominator > 0 else math.nan


def base_spec(p: dict, data_root) -> Spec:
    """The spec every run starts from, from the stage's flat parameters (method, alpha, seed and rate are
    set per run by :func:`plan`)."""
    return Spec(
        method=p["methods"][0], model=p["model"], data_root=str(data_root),
        n_classes=p["n_classes"], per_class=p["per_class"], n_clients=p["n_clients"], alpha=p["headline_alpha"],
        seed=p["seed"], r=p["r"], lora_alpha=p["lora_alpha"], pissa_niter=p["pissa_niter"], lr=p["lr_grid"][0],
        local_steps=p["local_steps"], batch_size=p["batch_size"], max_len=p["max_len"],
    )  # fmt: skip


# The stage parameters the study reads (a notebook passes its globals through :func:`stage_params`).
STAGE_KEYS = (
    "seed", "methods", "headline_alpha", "r", "lora_alpha", "pissa_niter", "local_steps", "batch_size", "max_len",
    "model", "n_classes", "per_class", "n_clients", "rounds", "seeds", "alphas", "lr_grid",
)  # fmt: skip


def stage_params(namespace) -> dict:
    missing = [k for k in STAGE_KEYS if k not in namespace]
    if missing:
        raise KeyError(f"stage parameters missing: {missing}")
    return {k: namespace[k] for k in STAGE_KEYS}


def design_of(p: dict) -> Design:
    from .params import HEADLINE_METHODS

    return Design(
        methods=tuple(p["methods"]), headline_methods=HEADLINE_METHODS, lr_grid=tuple(p["lr_grid"]),
        alphas=tuple(p["alphas"]), headline_alpha=p["headline_alpha"], seeds=p["seeds"], first_seed=p["seed"],
    )  # fmt: skip


def run_study(p: dict, data_root, quiet: bool = True) -> tuple[Runs, Design]:
    """Every run of the stage in one Flower simulation, with a progress bar over rounds."""
    from transformers.utils import logging as hf_logging

    from ..progress import tqdm
    from .flower import simulate

    hf_logging.disable_progress_bar()  # one bar per model load would fill the notebook; ours counts the rounds
    design, runs = design_of(p), Runs()
    bar = tqdm(total=design.n_runs() * (p["rounds"] + 1), desc="federated rounds", unit="round")

    def on_row(spec: Spec, row: dict) -> None:
        runs.add(spec, row)
        bar.set_postfix_str(f"{spec.method} alpha={spec.alpha:g} seed={spec.seed} lr={spec.lr:g}", refresh=False)
        bar.update()

    try:
        simulate(plan(base_spec(p, data_root), design, runs), p["rounds"], on_row=on_row, quiet=quiet)
    finally:
        bar.close()
    return runs, design


def tuning_table(runs: Runs, design: Design) -> list[dict]:
    """Best validation accuracy per (method, rate) in the tuning phase, and which rate each method keeps."""
    chosen = runs.chosen(design)
    return [
        {
            "method": m,
            "lr": lr,
            "best val acc": best_validation(runs.get(m, design.headline_alpha, design.first_seed, lr))["val_acc"],
            "chosen": lr == chosen[m],
        }
        for m in design.methods
        for lr in design.lr_grid
    ]


def curves(runs: Runs, design: Design, link_mbit: float) -> list[dict]:
    """Every chosen-rate run's rounds, long form (one row per method, alpha, seed and round)."""
    chosen = runs.chosen(design)
    out = []
    for (method, alpha, seed, lr), rows in runs.rows.items():
        if lr != chosen[method]:
            continue
        for row, compute, linked in zip(rows, elapsed(rows, None), elapsed(rows, link_mbit)):
            out.append({"method": method, "alpha": alpha, "seed": seed, "round": row["round"],
                        "val_acc": row["val_acc"], "test_acc": row["test_acc"], "compute_s": compute,
                        "with_links_s": linked})  # fmt: skip
    return out


def communication_table(runs: Runs, design: Design) -> list[dict]:
    """Per method (headline alpha, first seed, chosen rate): bytes per client per round, trainable share,
    training and aggregation time per round, factor-averaging errors (median over rounds)."""
    chosen = runs.chosen(design)
    table = []
    for m in design.methods:
        rows = runs.get(m, design.headline_alpha, design.first_seed, chosen[m])
        trained = rows[1:]
        table.append(
            {
                "method": m,
                "trainable share": rows[0]["trainable_share"],
                "download MB/round": float(np.median([r["download_bytes_per_client"] for r in trained])) / 1e6,
                "upload MB/round": float(np.median([r["upload_bytes_per_client"] for r in trained])) / 1e6,
                "slowest client s/round": float(np.median([r["train_s_slowest"] for r in trained])),
                "aggregation s/round": float(np.median([r["aggregation_s"] for r in trained])),
                "factor error vs update": float(np.median([r["factor_error_vs_update"] for r in trained])),
                "factor error vs BA": float(np.median([r["factor_error_vs_product"] for r in trained])),
            }
        )
    return table


def target_table(runs: Runs, design: Design, level: float, link_mbit: float) -> list[dict]:
    """Per method (headline alpha, first seed, chosen rate): rounds and time to ``level``, on compute alone and
    with the links, and the reduction against FFT's time (1 - method / FFT; nan where either never reached it)."""
    chosen = runs.chosen(design)
    table = []
    fft = runs.get("fft", design.headline_alpha, design.first_seed, chosen["fft"])
    for m in design.methods:
        rows = runs.get(m, design.headline_alpha, design.first_seed, chosen[m])
        row = {"method": m, "lr": f"{chosen[m]:g}", "best val acc": best_validation(rows)["val_acc"],
               "rounds to target": rounds_to_target(rows, level)}  # fmt: skip
        for name, link in (("compute", None), ("with links", link_mbit)):
            t = time_to_target(rows, level, link)
            row[f"time to target s ({name})"] = t
            r = ratio(t, time_to_target(fft, level, link))
            row[f"reduction vs FFT ({name})"] = 1 - r if math.isfinite(r) else math.nan
        table.append(row)
    return table
