"""Checkpoints of an unfinished training run, to resume after an interruption.

They live outside the stage's outs (DVC deletes those before it runs a stage), in a folder keyed by the params
that shape training (:func:`run_key`): a run with other params never resumes from them. Each checkpoint holds
the weights (safetensors), the optimiser state and the random generator's state (``torch.load`` with
``weights_only=True``) and the losses so far; it is written to a temporary folder and renamed, so an interruption
while saving leaves the previous one intact.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

PREFIX = "step-"


def run_key(shaping: Mapping[str, object]) -> str:
    """A short hash of the params that shape a training run (their JSON, keys sorted)."""
    return hashlib.sha256(json.dumps(shaping, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Checkpoints:
    """Save and restore ``module``'s training state under ``folder`` every ``every`` steps."""

    def __init__(self, folder: Path, module: nn.Module, every: int):
        if every < 1:
            raise ValueError(f"checkpoint every >= 1 steps, got {every}")
        self.folder, self.module, self.every = Path(folder), module, every

    def latest(self) -> Path | None:
        found = sorted(self.folder.glob(f"{PREFIX}*")) if self.folder.exists() else []
        return found[-1] if found else None

    def save(self, step: int, optimiser: torch.optim.Optimizer, generator: torch.Generator, losses: list[float]):
        self.folder.mkdir(parents=True, exist_ok=True)
        final = self.folder / f"{PREFIX}{step:08d}"
        partial = self.folder / f".partial-{step:08d}"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        state = {k: v.detach().contiguous() for k, v in self.module.state_dict().items()}
        save_file(state, partial / "model.safetensors")
        torch.save(optimiser.state_dict(), partial / "optimiser.pt")
        torch.save(generator.get_state(), partial / "generator.pt")
        (partial / "losses.json").write_text(json.dumps(losses))
        partial.rename(final)
        for old in self.folder.glob(f"{PREFIX}*"):
            if old != final:
                shutil.rmtree(old)

    def restore(self, optimiser: torch.optim.Optimizer, generator: torch.Generator, losses: list[float]) -> int:
        """Load the latest checkpoint into the module, optimiser, generator and ``losses``; the step it was
        taken at (0 when there is none)."""
        last = self.latest()
        if last is None:
            return 0
        self.module.load_state_dict(load_file(last / "model.safetensors"))
        optimiser.load_state_dict(torch.load(last / "optimiser.pt", weights_only=True))
        generator.set_state(torch.load(last / "generator.pt", weights_only=True))
        losses[:] = json.loads((last / "losses.json").read_text())
        return int(last.name.removeprefix(PREFIX))

    def clear(self) -> None:
        """Remove the run's checkpoints (once its final weights are saved as the stage's outs)."""
        shutil.rmtree(self.folder, ignore_errors=True)
