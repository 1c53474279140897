"""The one optimisation loop every trained part of FaceStudio runs through (encoders, CLIP, prior, generator,
baseline arms): AdamW over ``params``, every random draw from one seeded ``torch.Generator``, a progress bar, and
optionally checkpoints to resume from (see :mod:`.checkpoints`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import torch

from ..progress import tqdm

if TYPE_CHECKING:
    from .checkpoints import Checkpoints

# Called after each step with (steps done, seconds spent in steps so far); returning True stops training.
Callback = Callable[[int, float], bool]


def fit(
    step: Callable[[torch.Generator], torch.Tensor],
    params: Iterable[torch.nn.Parameter],
    *,
    steps: int,
    lr: float,
    seed: int,
    desc: str,
    weight_decay: float = 0.0,
    checkpoints: Checkpoints | None = None,
    callback: Callback | None = None,
) -> list[float]:
    """Minimise ``step(generator)`` (a scalar loss) for ``steps`` steps; returns the loss of each step done.

    With ``checkpoints``, training resumes from the last one saved (weights, optimiser, generator state, losses)
    and saves every ``checkpoints.every`` steps, so an interrupted run ends with the weights of an uninterrupted
    one. Time spent in ``callback`` (e.g. scoring samples) is not counted in the seconds passed to it."""
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError(f"{desc}: nothing to train (no parameter requires grad)")
    if steps < 1:
        raise ValueError(f"{desc}: steps must be >= 1, got {steps}")
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    losses: list[float] = []
    start = checkpoints.restore(optimiser, generator, losses) if checkpoints is not None else 0
    spent = 0.0
    for i in tqdm(range(start, steps), initial=start, total=steps, desc=desc, unit="step"):
        began = time.perf_counter()
        loss = step(generator)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{desc}: loss is {loss.item()} at step {i + 1}; lower the learning rate")
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
        spent += time.perf_counter() - began
        if checkpoints is not None and (i + 1) % checkpoints.every == 0 and i + 1 < steps:
            checkpoints.save(i + 1, optimiser, generator, losses)
        if callback is not None and callback(i + 1, spent):
            break
    return losses
