"""Progress that reaches the terminal under ``dvc repro`` and stays out of the rendered reports.

Inside a stage (the runner sets :data:`STAGE_ENV` for the notebook's kernel) bars and log lines go to the
kernel's original stderr, which is the terminal ``dvc repro`` runs in, not the notebook's output. In JupyterLab
they are ordinary notebook widgets (``tqdm.auto``).
"""

from __future__ import annotations

import logging
import os
import sys

STAGE_ENV = "REPLAB_STAGE"


def in_stage() -> bool:
    return bool(os.environ.get(STAGE_ENV))


def tqdm(*args, **kwargs):
    """``tqdm.tqdm`` on the terminal inside a stage; ``tqdm.auto.tqdm`` elsewhere."""
    if in_stage():
        from tqdm import tqdm as plain

        kwargs.setdefault("file", sys.__stderr__)
        kwargs.setdefault("mininterval", 1.0)
        kwargs.setdefault("dynamic_ncols", True)
        desc = kwargs.get("desc")
        if desc:
            kwargs["desc"] = f"{os.environ[STAGE_ENV]}: {desc}"
        return plain(*args, **kwargs)
    from tqdm.auto import tqdm as auto

    return auto(*args, **kwargs)


def log_to_terminal(level: int = logging.INFO) -> None:
    """Inside a stage, send the library's log lines to the terminal (once)."""
    if not in_stage():
        return
    logger = logging.getLogger("replab")
    if not any(getattr(h, "_replab_terminal", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.__stderr__)
        handler.setFormatter(logging.Formatter(f"{os.environ[STAGE_ENV]}: %(message)s"))
        handler._replab_terminal = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False


def say(message: str) -> None:
    """One line on the terminal inside a stage (what the stage is doing now); nothing in JupyterLab."""
    if in_stage():
        print(f"{os.environ[STAGE_ENV]}: {message}", file=sys.__stderr__, flush=True)
