"""The eigensolver benchmark's committed figures (``benchmarks/spca_solver.py``), read for the notebook and the
metrics: the solver at 10^6 points takes minutes per case with every arm and repeat, too long for a stage, so its
run is committed and the stage reports it.

The targets are pinned here (the issue's, fixed before the run) and the file's own must equal them; every case
the issue names must be in the file (a missing or failed case is not met); the verdicts are recomputed from the
rows, so a file that says "met" for a missed figure is caught.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..claims import Claim, Target, claim
from ..measure import Machine, Spread

RESULTS_2D = Path("benchmarks/results/spca_solver_2d_cpu.json")
HEADLINE_POINTS = 1_000_000
MIB = 2**20
JUDGED_ARM = "ours, count certificate on the clock"
# The targets: >= 2x the naive eigsh, <= 2 GB (2e9 bytes) above the process's baseline, eigenvalues to 1e-6
# relative; medians of at least 3 interleaved repeats.
TARGETS = {"speedup": 2.0, "bytes": 2e9, "relative": 1e-6, "judged_on": JUDGED_ARM}
MIN_REPEATS = 3
LENGTHS = ("2.83 px", "1 %", "2 %", "5 %")
PROFILES = ("smooth", "sharp")


@dataclass(frozen=True)
class SolverBenchmark:
    rows: list[dict]  # one per (case, arm): medians, peaks, speed-ups against the naive arm of the same run
    machine: Machine
    repeats: int
    date: str
    source: str

    def headline_rows(self, arm: str = JUDGED_ARM) -> dict[tuple[str, str], dict | None]:
        """The 2-D cases at 10^6 points by (length, profile), None where the file lacks one."""
        found = {
            (r["length"], r["profile"]): r
            for r in self.rows
            if r["dims"] == 2 and r["points"] == HEADLINE_POINTS and r["arm"] == arm
        }
        return {(length, profile): found.get((length, profile)) for length in LENGTHS for profile in PROFILES}


def lowest_k(row: dict) -> bool:
    """Whether the count proved exactly the k lowest in every repeat (not only "lowest up to a top group").
    Files written before the flag existed carry it in the certificate's wording."""
    certificate = row.get("certificate") or {}
    return bool(
        row["certified"]
        and certificate.get("lowest_k", certificate.get("how", "").endswith("eigenvalues below the top + margin"))
    )


def case_verdict(row: dict | None, naive: dict | None = None) -> tuple[bool, str]:
    """Every target of one case (``naive``: the same case's naive row, whose repeats must all have run too), and
    why not where one fails."""
    if row is None:
        return False, "not in the file"
    reasons = []
    if row["error"] or row["repeats_run"] < row["repeats"]:
        reasons.append(f"{row['repeats'] - row['repeats_run']} of {row['repeats']} repeats failed")
    if naive is None or naive["error"] or naive["repeats_run"] < naive["repeats"]:
        reasons.append("the naive arm did not run every repeat")
    if row["naive_wrong"]:
        reasons.append("no valid baseline (the naive arm's states are not the lowest)")
    elif row["speedup"] is None or row["speedup"] < TARGETS["speedup"]:
        reasons.append("slower than the target")
    if row.get("peak_mib") is None or row["peak_mib"] * MIB > TARGETS["bytes"]:
        reasons.append("over 2 GB")
    if row["max_relative_error"] is None:
        reasons.append("eigenvalues not checked")
    elif row["max_relative_error"] > TARGETS["relative"]:
        reasons.append("eigenvalues differ")
    if not lowest_k(row):
        reasons.append("not certified as exactly the k lowest in every repeat")
    return not reasons, "; ".join(reasons)


def load(path: Path = RESULTS_2D, root: Path | None = None) -> SolverBenchmark:
    """``path`` relative to the project ``root`` (the current directory by default); the claims name it so."""
    source, path = Path(path).as_posix(), (Path(root) / path if root is not None else Path(path))
    if not path.is_file():
        made_by = f"python benchmarks/spca_solver.py --dims 2 --out {path.with_suffix('.md')}"
        raise FileNotFoundError(f"{path} is missing: run `{made_by}` (make bench)")
    data = json.loads(path.read_text())
    if data["targets"] != TARGETS:
        raise ValueError(f"{path} was judged against {data['targets']}, not the issue's {TARGETS}")
    if data["repeats"] < MIN_REPEATS:
        raise ValueError(f"{path} has {data['repeats']} repeats; a headline needs at least {MIN_REPEATS}")
    return SolverBenchmark(
        rows=data["rows"],
        machine=Machine(**data["machine"]),
        repeats=data["repeats"],
        date=data["date"],
        source=source,
    )


def _case(key: tuple[str, str]) -> str:
    return f"l = {key[0]}, {key[1]}"


def _figures(row: dict | None) -> str:
    if row is None or row["error"]:
        return "failed" if row else "missing"
    speed = "—" if row["speedup"] is None else f"{row['speedup']:.2f}x"
    return f"{speed}{' (naive wrong)' if row['naive_wrong'] else ''}, {row['peak_mib']:.0f} MiB"


def claims(bench: SolverBenchmark) -> list[Claim]:
    """Schrödinger PCA's solver at 10^6 points (2-D), from the committed benchmark run."""
    rows = bench.headline_rows()
    naive = bench.headline_rows("naive")
    verdicts = {key: case_verdict(row, naive[key]) for key, row in rows.items()}
    scale = (
        f"2-D grids of {HEADLINE_POINTS:,} points, {len(rows)} cases ({len(LENGTHS)} correlation lengths x smooth/"
        f"sharp variance), top 10 states; committed benchmark run of {bench.date} ({bench.source}), not re-run here"
    )
    per_case = "; ".join(
        f"{_case(key)}: {_figures(row)}{'' if verdicts[key][0] else f' ({verdicts[key][1]})'}"
        for key, row in rows.items()
    )
    ran = {key: row for key, row in rows.items() if row is not None and not row["error"]}
    valid = {key: row for key, row in ran.items() if not row["naive_wrong"] and row["speedup"] is not None}
    wrong = [_case(key) for key, row in ran.items() if row["naive_wrong"]]
    slowest = min(valid, key=lambda key: valid[key]["speedup"]) if valid else None
    solve_only = [r for key, r in bench.headline_rows("ours").items() if key in valid and r and r["speedup"]]
    errors = [row["max_relative_error"] for row in rows.values() if row is not None]
    peaks = [row for row in ran.values()]
    return [
        claim(
            "solver_cases_met_fraction",
            f"share of the 2-D cases at 10^6 points meeting every solver target (>= {TARGETS['speedup']:g}x the naive "
            f"eigsh, <= {TARGETS['bytes'] / 1e9:g} GB above baseline, eigenvalues to {TARGETS['relative']:g}, "
            "certified lowest)",
            sum(met for met, _ in verdicts.values()) / len(verdicts),
            scale=scale,
            method="reconstruction",
            target=Target(op=">=", level=1.0),
            timing=True,
            machine=bench.machine,
            note=f"judged on '{JUDGED_ARM}'; {per_case}",
        ),
        claim(
            "solver_min_speedup",
            "slowest case's speed-up over the naive eigsh(H.tocsc(), k=10, sigma=-1) at 10^6 points, count "
            f"certificate on the clock (medians of {bench.repeats} interleaved repeats; cases where the naive "
            "arm's states are the lowest)",
            valid[slowest]["speedup"] if slowest else None,
            unit="x",
            scale=scale,
            method="reconstruction",
            target=Target(op=">=", level=TARGETS["speedup"]),
            timing=True,
            machine=bench.machine,
            spread=Spread.of(valid[slowest]["speedups"]) if slowest else None,
            note=(f"slowest: {_case(slowest)}; spread: the naive median / each repeat of ours. " if slowest else "")
            + (
                f"Left out, the naive arm returning states that are not the lowest: {', '.join(wrong)}" if wrong else ""
            ),
        ),
        claim(
            "solver_min_speedup_solve_only",
            "the same without the count (the shift certified, the k lowest not): slowest case's speed-up",
            min(r["speedup"] for r in solve_only) if solve_only else None,
            unit="x",
            scale=scale,
            method="reconstruction",
            timing=True,
            machine=bench.machine,
            reason="no target: the targets are judged with the count on the clock",
        ),
        claim(
            "solver_max_peak_mib",
            "largest resident peak above the process's baseline at 10^6 points, count certificate included",
            max(r["peak_mib"] for r in peaks) if len(peaks) == len(rows) else None,
            unit="MiB",
            scale=scale,
            method="reconstruction",
            target=Target(op="<=", level=TARGETS["bytes"] / MIB),
            measured=True,
            machine=bench.machine,
            note=(
                f"process baselines (resident after imports) {min(r['baseline_mib'] for r in peaks):.0f}–"
                f"{max(r['baseline_mib'] for r in peaks):.0f} MiB; largest total "
                f"{max(r['peak_mib'] + r['baseline_mib'] for r in peaks):.0f} MiB"
            )
            if peaks
            else "",
        ),
        claim(
            "solver_max_eigenvalue_error",
            "largest eigenvalue difference over every repeat, relative to max(1, |E|), against the naive arm where "
            "its states are the lowest and a certified machine-precision solve (ours, tol 0) where they are not",
            max(errors) if len(errors) == len(rows) and None not in errors else None,
            scale=scale,
            method="reconstruction",
            target=Target(op="<=", level=TARGETS["relative"]),
        ),
    ]


def table(bench: SolverBenchmark):
    """The 2-D cases at 10^6 points, one row per case and arm: median time, speed-up and peak memory."""
    import pandas as pd

    rows = [r for r in bench.rows if r["dims"] == 2 and r["points"] == HEADLINE_POINTS]
    frame = pd.DataFrame(
        {
            "l": r["length"],
            "variance": r["profile"],
            "arm": r["arm"],
            "median s": r.get("median_s"),
            "range s": f"{min(r['seconds']):.1f}–{max(r['seconds']):.1f}" if r["seconds"] else r["error"],
            "vs naive": r["speedup"],
            "peak MiB above baseline": r.get("peak_mib"),
            "naive states lowest": not r["naive_wrong"],
        }
        for r in rows
    )
    return frame.set_index(["l", "variance", "arm"])


def figure(bench: SolverBenchmark):
    """Speed-up over the naive eigsh and peak memory per case at 10^6 points, with the targets drawn in."""
    import matplotlib.pyplot as plt
    import numpy as np

    judged, solve = bench.headline_rows(), bench.headline_rows("ours")
    keys = list(judged)
    x = np.arange(len(keys))

    def values(rows, field):
        return [np.nan if rows[k] is None or rows[k].get(field) is None else rows[k][field] for k in keys]

    fig, axes = plt.subplots(1, 2, figsize=(13, 3.8))
    axes[0].bar(x - 0.2, values(solve, "speedup"), 0.4, label="solve (shift certified)")
    axes[0].bar(x + 0.2, values(judged, "speedup"), 0.4, label="solve + count certificate (judged)")
    axes[0].axhline(TARGETS["speedup"], color="k", ls=":", lw=1, label="target")
    axes[0].axhline(1.0, color="grey", lw=0.8)
    for i, key in enumerate(keys):
        if judged[key] is not None and judged[key]["naive_wrong"]:
            axes[0].annotate("naive wrong", (i, 0.05), ha="center", fontsize=7, rotation=90, va="bottom")
    axes[0].set(ylabel="speed-up over naive eigsh", title="Time at 10^6 points (medians)")
    axes[1].bar(x - 0.2, values(solve, "peak_mib"), 0.4, label="solve")
    axes[1].bar(x + 0.2, values(judged, "peak_mib"), 0.4, label="solve + count")
    axes[1].axhline(TARGETS["bytes"] / MIB, color="k", ls=":", lw=1, label="2 GB")
    axes[1].set(ylabel="MiB above baseline", title="Peak resident memory")
    for ax in axes:
        ax.set_xticks(x, [f"{length}\n{profile}" for length, profile in keys], fontsize=8)
        ax.legend(fontsize=8)
    fig.suptitle(f"Eigensolver, 2-D, 10^6 points — committed run of {bench.date}, {bench.machine.describe()}")
    fig.tight_layout()
    return fig
