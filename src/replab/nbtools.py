"""Small helpers the notebooks share: project paths, figures, metrics."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def project_root(start: Path | None = None) -> Path:
    """The folder holding params.yaml, from the current directory upwards (notebooks run from
    ``notebooks/`` in JupyterLab and from the root under papermill)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "params.yaml").exists():
            return folder
    raise FileNotFoundError(f"no params.yaml in {here} or above: open the notebook inside the replab project")


def save_figure(fig, folder: str | Path, name: str) -> Path:
    """Save ``fig`` as PNG (the notebook shows it too); fixed metadata so reruns give the same bytes."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Software": None})
    return path


def _round(value: Any, digits: int) -> Any:
    if isinstance(value, float):
        return value if not math.isfinite(value) else float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {k: _round(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_round(v, digits) for v in value]
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return _round(value.tolist(), digits)
    return value


def write_metrics(path: str | Path, metrics: dict, digits: int = 6) -> Path:
    """JSON with sorted keys and floats to ``digits`` significant figures."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_round(metrics, digits), indent=2, sort_keys=True) + "\n")
    return path
