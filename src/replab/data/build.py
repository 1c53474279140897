"""``replab data build``: write every data set into ``data/`` at once, or leave the old one untouched."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from tqdm.auto import tqdm

log = logging.getLogger(__name__)

DATA_DIR = Path("data")


def _builders():
    from . import gp_fields, sklearn_sets, wordnet

    return {"sklearn": sklearn_sets.build, "wordnet": wordnet.build, "gp_fields": gp_fields.build}


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
