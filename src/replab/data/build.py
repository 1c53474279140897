"""``replab data build``: write every data set into ``data/`` at once, or leave the old one untouched."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from ..progress import tqdm

log = logging.getLogger(__name__)

DATA_DIR = Path("data")


# The data registry: folder under data/ -> module whose ``build(folder)`` writes it deterministically.
# A paper that brings new data adds one line here and names the folder in its registry entry.
DATASETS: dict[str, str] = {
    "sklearn": "replab.data.sklearn_sets",
    "wordnet": "replab.data.wordnet",
    "gp_fields": "replab.data.gp_fields",
    "portraits": "replab.data.portraits",
}


def module_file(name: str) -> str:
    """The builder's source file, relative to the project root (a dependency of the stages that read it)."""
    return "src/" + DATASETS[name].replace(".", "/") + ".py"


def _builders():
    import importlib

    return {name: importlib.import_module(module).build for name, module in DATASETS.items()}


def build(out: Path = DATA_DIR) -> Path:
    """Build all data sets into a staging folder next to ``out``, then swap it in."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-building-", dir=out.parent))
    try:
        for name, builder in tqdm(_builders().items(), desc="data sets", unit="set"):
            log.info("building %s", name)
            builder(staging / name)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return out


def _dvc(*args: str) -> int:
    import subprocess
    import sys

    dvc = Path(sys.executable).with_name("dvc")
    cmd = [str(dvc) if dvc.exists() else "dvc", *args]
    return subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode


def _matches(tracker: Path) -> bool:
    """Whether the workspace data hash as ``tracker`` records. ``dvc commit`` hashes the data (and caches
    it, so later ``dvc status`` calls are clean); if it rewrites the record, the hashes differ, and the
    record is put back."""
    before = tracker.read_text()
    rc = _dvc("commit", "-f", "-q", str(tracker))
    if tracker.read_text() != before:
        tracker.write_text(before)
        return False
    return rc == 0


def ensure(out: Path = DATA_DIR, tracker: Path = Path("data.dvc")) -> str:
    """Make ``data/`` match ``data.dvc``: nothing if it does, else pull it from the DVC remote, else build
    it. Returns what it did; raises if the built data hash differently from ``data.dvc``."""
    if not tracker.exists():
        build(out)
        return "built (no data.dvc to compare with)"
    if _dvc("status", "-q", str(tracker)) == 0:
        return "up to date"
    if out.exists() and _matches(tracker):
        return "up to date (now cached)"
    if _dvc("pull", "-q", str(tracker)) == 0 and _dvc("status", "-q", str(tracker)) == 0:
        return "restored from the DVC cache or remote"
    build(out)
    if not _matches(tracker):
        raise RuntimeError(
            f"{out}/ was rebuilt but does not hash as {tracker} records. If the builders changed on purpose, "
            f"record the new data with `dvc add {out}` and commit {tracker}; otherwise this is a determinism bug."
        )
    return "built (matches data.dvc)"
