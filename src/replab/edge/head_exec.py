"""Runs a head split on real backends: one worker process per backend, pinned to its cores with a thread pool
of that size (or driving a CUDA device), all reading q, k, v from shared memory and writing their heads'
outputs into a shared output tensor. Timings are the host's wall clock from dispatch until every backend
has answered, so they include the copies and the inter-process signalling the schedule has to pay.

Tensors are laid out head-major, ``(heads, batch, seq, head_dim)``, so each backend's share is one contiguous
block (what a copy to a GPU wants).
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass, field

import torch
import torch.multiprocessing as mp
from torch.nn.functional import scaled_dot_product_attention

from .heads import HeadBackend, HeadProfile, HeadSchedule


@dataclass(frozen=True)
class BackendSpec:
    """A backend to start: a pool of ``len(cores)`` threads pinned to ``cores``, computing on ``device``."""

    name: str
    cores: tuple[int, ...]
    device: str = "cpu"

    def __post_init__(self):
        if not self.cores:
            raise ValueError(f"backend {self.name!r}: give at least one core (a CUDA backend needs a host core)")
        available = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        if available is not None and not set(self.cores) <= set(available):
            raise ValueError(f"backend {self.name!r}: cores {list(self.cores)} not all available (have {available})")
        if self.device != "cpu" and not (self.device.startswith("cuda") and torch.cuda.is_available()):
            raise ValueError(f"backend {self.name!r}: device {self.device!r} is not available here")


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal attention of head-major ``(heads, batch, seq, dim)`` tensors (heads and batch are both batch
    dimensions to it), output in the same layout."""
    return scaled_dot_product_attention(q, k, v, is_causal=True)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _pin(tensors) -> bool:
    """Page-lock the shared tensors so copies to the GPU run at full speed (pageable copies are several times
    slower, which would make the GPU a weak baseline). False where the driver refuses."""
    cudart = torch.cuda.cudart()
    return all(int(cudart.cudaHostRegister(t.data_ptr(), t.numel() * t.element_size(), 0)) == 0 for t in tensors)


def _worker(spec: BackendSpec, q, k, v, out, conn) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, spec.cores)
    torch.set_num_threads(len(spec.cores))
    device = torch.device(spec.device)
    pinned = device.type == "cuda" and _pin((q, k, v, out))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    conn.send(("ready", pinned))
    while True:
        msg = conn.recv()
        if msg is None:
            return
        a, b = msg
        t0 = time.perf_counter()
        qs, ks, vs = (t[a:b].to(device, non_blocking=pinned) for t in (q, k, v))  # on a CPU: views, no copy
        _sync(device)
        t1 = time.perf_counter()
        res = attention(qs, ks, vs)
        _sync(device)
        t2 = time.perf_counter()
        out[a:b].copy_(res, non_blocking=pinned)  # one contiguous block; from a GPU, the copy back
        _sync(device)
        t3 = time.perf_counter()
        conn.send(((t1 - t0) + (t3 - t2), t2 - t1))


@dataclass
class Timing:
    wall_ms: float
    copy_ms: dict[str, float] = field(default_factory=dict)
    compute_ms: dict[str, float] = field(default_factory=dict)


class HeadExecutor:
    """Worker processes for ``backends`` over one attention problem of shape ``(n_heads, batch, seq_len,
    head_dim)`` with inputs drawn from ``seed``. Use as a context manager (workers stop on exit)."""

    def __init__(self, backends: list[BackendSpec], n_heads: int, batch: int, seq_len: int, head_dim: int, seed=0):
        names = [b.name for b in backends]
        if not backends or len(set(names)) != len(names):
            raise ValueError(f"give one or more backends with distinct names, got {names}")
        self.backends, self.n_heads = list(backends), n_heads
        self.shape = dict(n_heads=n_heads, batch=batch, seq_len=seq_len, head_dim=head_dim)
        g = torch.Generator().manual_seed(seed)
        self.q, self.k, self.v = (torch.randn(n_heads, batch, seq_len, head_dim, generator=g) for _ in range(3))
        self.out = torch.zeros_like(self.q)
        for t in (self.q, self.k, self.v, self.out):
            t.share_memory_()
        self._procs: list = []
        self._conns: dict[str, object] = {}
        self.pinned: dict[str, bool] = {}  # per backend: whether its copies use page-locked memory

    def __enter__(self) -> HeadExecutor:
        ctx = mp.get_context("spawn")  # no fork after OpenMP or CUDA started in this process
        try:
            for spec in self.backends:
                mine, theirs = ctx.Pipe()
                p = ctx.Process(target=_worker, args=(spec, self.q, self.k, self.v, self.out, theirs), daemon=True)
                p.start()
                self._procs.append(p)
                self._conns[spec.name] = mine
            for name, conn in self._conns.items():
                if not conn.poll(120):
                    raise RuntimeError(f"head backend {name!r} did not start")
                self.pinned[name] = conn.recv()[1]
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for conn in self._conns.values():
            try:
                conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for p in self._procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join()
        self._procs, self._conns = [], {}

    def run(self, schedule: HeadSchedule | dict[str, int]) -> Timing:
        """Compute every head once as ``schedule`` splits them; the output lands in ``self.out`` (heads
        nobody computes keep what was there: :meth:`check` clears it first)."""
        heads = schedule.heads if isinstance(schedule, HeadSchedule) else schedule
        if sum(heads.values()) != self.n_heads or any(h < 0 for h in heads.values()):
            raise ValueError(f"a schedule must give out all {self.n_heads} heads once, got {heads}")
        unknown = set(heads) - set(self._conns)
        if unknown:
            raise ValueError(f"schedule names backends not started here: {sorted(unknown)}")
        return self._dispatch(HeadSchedule(dict(heads), 0.0).slices())

    def _dispatch(self, slices: dict[str, tuple[int, int]]) -> Timing:
        # No tensor work in this process while timing: its idle OpenMP threads would spin on the
        # backends' cores.
        t0 = time.perf_counter()
        for name, (a, b) in slices.items():
            if b > a:
                self._conns[name].send((a, b))
        timing = Timing(0.0)
        for name, (a, b) in slices.items():
            if b > a:
                timing.copy_ms[name], timing.compute_ms[name] = (1e3 * s for s in self._conns[name].recv())
        timing.wall_ms = 1e3 * (time.perf_counter() - t0)
        return timing

    def check(self, heads: dict[str, int], reference: torch.Tensor) -> float:
        """Largest absolute deviation of the split's output from ``reference`` (a head left out shows as inf)."""
        self.out.fill_(float("nan"))
        self.run(heads)
        return float(torch.nan_to_num(self.out - reference, nan=float("inf")).abs().max())

    def reference(self) -> torch.Tensor:
        """The unsplit attention, computed here in one call."""
        return attention(self.q, self.k, self.v)

    def measure_profile(self, name: str, source: str, repeats: int = 5) -> HeadProfile:
        """Per-head latency tables of every backend, each measured alone for h = 1..n_heads (medians of
        ``repeats``); ``dispatch_ms`` is the median of wall time minus the worker's own copy + compute."""
        backends = []
        for spec in self.backends:
            compute, copy, overhead = [0.0], [0.0], []
            for h in range(1, self.n_heads + 1):
                self._dispatch({spec.name: (0, h)})  # warm-up (first touch, allocator, CUDA kernels)
                runs = [self._dispatch({spec.name: (0, h)}) for _ in range(repeats)]
                compute.append(statistics.median(r.compute_ms[spec.name] for r in runs))
                copy.append(statistics.median(r.copy_ms[spec.name] for r in runs))
                overhead += [r.wall_ms - r.compute_ms[spec.name] - r.copy_ms[spec.name] for r in runs]
            backends.append(
                HeadBackend(
                    name=spec.name,
                    device=spec.device,
                    cores=list(spec.cores),
                    compute_ms=compute,
                    copy_ms=copy,
                    dispatch_ms=max(0.0, statistics.median(overhead)),
                )
            )
        return HeadProfile(name=name, kind="measured", source=source, backends=backends, **self.shape)


def default_backends(use_cuda: bool | None = None) -> list[BackendSpec]:
    """Backends for this machine: where a GPU is present its last core drives it; the other cores form a
    "big" pool (three quarters) and a "little" pool, like a phone's big.LITTLE CPU, plus an "all" pool of
    every one of them (which conflicts with both). With two cores the pools are one core each."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    use_cuda = torch.cuda.is_available() if use_cuda is None else use_cuda
    specs = []
    if use_cuda:
        if len(cores) < 2:
            raise ValueError("a CUDA backend needs a host core of its own: this machine has one core")
        specs.append(BackendSpec("cuda", (cores[-1],), "cuda:0"))
        cores = cores[:-1]
    if len(cores) >= 4:
        cut = (3 * len(cores)) // 4
        specs += [BackendSpec("cpu-big", tuple(cores[:cut])), BackendSpec("cpu-little", tuple(cores[cut:]))]
    elif len(cores) >= 2:
        specs += [BackendSpec(f"cpu-core{c}", (c,)) for c in cores]
    if len(cores) >= 2 or not specs:
        specs.append(BackendSpec("cpu-all", tuple(cores)))
    return specs


def compare_with_single(
    executor: HeadExecutor, schedule: HeadSchedule, rounds: int = 3, iters: int = 20, seed: int = 0
) -> dict:
    """Wall time of ``schedule`` against every backend alone (all heads): per round every arm runs ``iters``
    times after a checked warm-up, in an order shuffled per round (seeded); per arm the median of each round's
    median. ``speedup`` is the best single backend's time over the schedule's (median over rounds, with the
    rounds' min and max). A schedule that puts every head on one backend *is* that backend's arm: it is not
    timed twice (``same_as`` names it), so its speed-up is that arm's against the best one."""
    import random

    singles = {b.name: {b.name: executor.n_heads} for b in executor.backends}
    same_as = next((name for name, heads in singles.items() if heads == dict(schedule.heads)), None)
    arms = singles if same_as else {"schedule": dict(schedule.heads)} | singles
    per_round: dict[str, list[float]] = {a: [] for a in arms}
    order = random.Random(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # this process's own tensor work must not spin on the backends' cores
    try:
        reference = executor.reference()
        max_dev = 0.0
        for _ in range(rounds):
            names = list(arms)
            order.shuffle(names)
            for arm in names:
                max_dev = max(max_dev, executor.check(arms[arm], reference))  # also the warm-up
                per_round[arm].append(statistics.median(executor.run(arms[arm]).wall_ms for _ in range(iters)))
    finally:
        torch.set_num_threads(threads)
    scheduled = per_round[same_as or "schedule"]
    single_ms = {a: statistics.median(per_round[a]) for a in singles}
    best = min(single_ms, key=single_ms.get)
    ratios = [b / s for b, s in zip(per_round[best], scheduled)]
    return {
        "schedule": dict(schedule.heads),
        "same_as": same_as,
        "predicted_ms": schedule.predicted_ms,
        "schedule_ms": statistics.median(scheduled),
        "single_ms": single_ms,
        "best_single": best,
        "speedup": statistics.median(ratios),
        "speedup_min": min(ratios),
        "speedup_max": max(ratios),
        "rounds": {**per_round, "schedule": scheduled},
        "max_abs_deviation": max_dev,
        "pinned": dict(executor.pinned),
    }


__all__ = ["BackendSpec", "HeadExecutor", "Timing", "attention", "compare_with_single", "default_backends"]
