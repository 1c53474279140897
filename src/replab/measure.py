"""Repeated measurements: arms interleaved, median and spread, and the machine they ran on.

Every timing claim goes through :func:`repeat` so that its figure is a median over >= 3 interleaved repeats
(unless a profile asks for fewer, which the claim then states) and carries the machine it was measured on.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict

from .progress import say


class Machine(BaseModel):
    """Where a timing was measured."""

    model_config = ConfigDict(frozen=True)

    arch: str
    cpu: str
    cores: int
    torch: str
    device: str = "cpu"

    def describe(self) -> str:
        return (
            f"{self.device if self.device != 'cpu' else self.cpu}, {self.cores} cores, {self.arch}, torch {self.torch}"
        )


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: str = "cpu") -> Machine:
    """This machine: CPU model, usable cores, torch version, and the accelerator where one is used."""
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:  # measuring something that does not use torch
        torch_version = "not installed"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return Machine(arch=platform.machine(), cpu=_cpu_model(), cores=cores, torch=torch_version, device=device)


class Spread(BaseModel):
    """Median and spread of one arm's repeats (seconds, or whatever the arm returned)."""

    model_config = ConfigDict(frozen=True)

    median: float
    low: float
    high: float
    values: list[float]

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        if not values:
            raise ValueError("no measurements")
        return cls(median=statistics.median(values), low=min(values), high=max(values), values=list(values))

    def describe(self, unit: str = "", digits: int = 3) -> str:
        return (
            f"median {self.median:.{digits}g}{unit} (range {self.low:.{digits}g}–{self.high:.{digits}g}, "
            f"n = {len(self.values)})"
        )


@dataclass
class Repeats:
    """The outcome of :func:`repeat`: per-arm spreads, and what each call returned."""

    spreads: dict[str, Spread]
    results: dict[str, list] = field(default_factory=dict)
    machine: Machine | None = None

    def ratio(self, numerator: str, denominator: str) -> Spread:
        """Per-repeat ratios numerator / denominator (arms measured side by side in one round)."""
        a, b = self.spreads[numerator].values, self.spreads[denominator].values
        return Spread.of([x / y for x, y in zip(a, b, strict=True)])


def repeat(
    arms: Mapping[str, Callable[[], object]],
    repeats: int = 3,
    *,
    warmup: int = 0,
    measure: Callable[[object, float], float] | None = None,
    device: str = "cpu",
    label: str | None = None,
) -> Repeats:
    """Run every arm ``repeats`` times, interleaved (round r runs each arm once, in an order that rotates
    between rounds so no arm always goes first), and summarise each arm.

    The figure of one call is its wall time in seconds, or ``measure(result, seconds)`` when given (e.g. a
    throughput, or a time-to-loss read from the call's own log).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    names = list(arms)
    for _ in range(warmup):
        for name in names:
            arms[name]()
    values: dict[str, list[float]] = {n: [] for n in names}
    results: dict[str, list] = {n: [] for n in names}
    for r in range(repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            if label:
                say(f"{label}: round {r + 1}/{repeats}, {name}")
            start = time.perf_counter()
            result = arms[name]()
            seconds = time.perf_counter() - start
            values[name].append(float(measure(result, seconds)) if measure else seconds)
            results[name].append(result)
    return Repeats({n: Spread.of(v) for n, v in values.items()}, results, machine(device))
