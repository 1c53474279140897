"""Small helpers the notebooks share: where outputs go, figures, curves, results."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from . import claims
from .progress import log_to_terminal, say

# Set by the stage runner: the folder (relative to the project root) the notebook writes into. Unset in
# JupyterLab, where a hand run writes to build/scratch/<paper>/ and never into the stage's tracked outs.
OUTPUT_ENV = "REPLAB_STAGE_OUTPUT"


def project_root(start: Path | None = None) -> Path:
    """The folder holding params.yaml, from the current directory upwards (notebooks run from
    ``notebooks/`` in JupyterLab and from the root under papermill)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "params.yaml").exists():
            return folder
    raise FileNotFoundError(f"no params.yaml in {here} or above: open the notebook inside the replab project")


@dataclass(frozen=True)
class StageOutputs:
    """Where one paper's notebook writes: figures, checkpoints, curves and its results (claims + metrics)."""

    paper: str
    root: Path  # the project root
    folder: Path  # everything below goes here
    scratch: bool  # True for a hand run (JupyterLab)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def figures(self) -> Path:
        return self.folder / "figures"

    @property
    def models(self) -> Path:
        return self.folder / "models"

    @property
    def plots(self) -> Path:
        return self.folder / "plots"

    @property
    def logs(self) -> Path:
        return self.folder / "logs"

    @property
    def metrics(self) -> Path:
        return self.folder / "metrics"

    def figure(self, fig, name: str) -> Path:
        return save_figure(fig, self.figures, name)

    def curve(self, name: str, rows: Iterable[Mapping[str, object]] | object) -> Path:
        return write_curve(self.plots / f"{name}.csv", rows)

    def save(self, results: claims.PaperResults) -> dict[str, Path]:
        if results.paper != self.paper:
            raise ValueError(f"results of {results.paper!r} saved as {self.paper!r}")
        written = claims.save(results, self.metrics)
        counts = results.counts()
        say(f"claims: {counts['met']} met, {counts['missed']} missed, {counts['n/a']} n/a")
        return written


def stage_outputs(paper: str, start: Path | None = None) -> StageOutputs:
    root = project_root(start)
    staged = os.environ.get(OUTPUT_ENV)
    folder = root / staged if staged else root / "build" / "scratch" / paper
    log_to_terminal()
    return StageOutputs(paper, root, folder, scratch=not staged)


def save_figure(fig, folder: str | Path, name: str) -> Path:
    """Save ``fig`` as PNG (the notebook shows it too); fixed metadata so reruns give the same bytes."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Software": None})
    return path


def _cell(value: object) -> object:
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    if isinstance(value, float):
        return "" if not math.isfinite(value) else f"{value:.6g}"
    return value


def write_curve(path: str | Path, rows: Iterable[Mapping[str, object]] | object) -> Path:
    """A curve as CSV (rows of equal keys, or a pandas DataFrame), floats to 6 significant figures so reruns
    give the same bytes; ``dvc plots`` reads it."""
    if hasattr(rows, "to_dict"):
        rows = rows.to_dict(orient="records")
    rows = list(rows)
    if not rows:
        raise ValueError(f"{path}: a curve needs at least one row")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: _cell(v) for k, v in row.items()} for row in rows)
    return path
