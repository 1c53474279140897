"""Pipeline partitioning (AccEPT's load balancing; the dynamic program of PipeEdge, DSD 2022): split a chain
of layers into contiguous stages on an ordered list of devices, minimising the slowest stage — its compute
or the transfer into it — while every stage fits its device's memory."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class InfeasiblePartition(ValueError):
    """No split fits every device's memory."""


@dataclass(frozen=True)
class Partition:
    starts: tuple[int, ...]  # first layer of each stage; stage s holds layers starts[s] .. starts[s+1]-1
    stage_times: tuple[float, ...]  # compute seconds per stage
    transfer_times: tuple[float, ...]  # seconds to send the boundary tensor into stage s (0 for the first)
    bottleneck: float  # max over stages of compute and transfer

    def ranges(self, n_layers: int) -> list[range]:
        ends = list(self.starts[1:]) + [n_layers]
        return [range(a, b) for a, b in zip(self.starts, ends)]


def _check(layer_times, layer_memory, boundary_bytes, memory, bandwidth):
    t = np.asarray(layer_times, dtype=float)
    if t.ndim != 2:
        raise ValueError(f"layer_times must be (n_devices, n_layers), got shape {t.shape}")
    n_dev, n_layers = t.shape
    if n_layers < n_dev:
        raise ValueError(f"{n_layers} layers cannot fill {n_dev} stages")
    mem_l = np.asarray(layer_memory, dtype=float)
    out_b = np.asarray(boundary_bytes, dtype=float)
    mem_d = np.asarray(memory, dtype=float)
    bw = np.asarray(bandwidth, dtype=float)
    if mem_l.shape != (n_layers,) or out_b.shape != (n_layers,):
        raise ValueError("layer_memory and boundary_bytes need one value per layer")
    if mem_d.shape != (n_dev,):
        raise ValueError("memory needs one value per device")
    if bw.shape != (max(n_dev - 1, 0),) or np.any(bw <= 0):
        raise ValueError("bandwidth needs one positive value (bytes/s) per link between consecutive devices")
    if np.any(t < 0) or np.any(mem_l < 0) or np.any(out_b < 0):
        raise ValueError("times, memory and byte counts must be non-negative")
    return t, mem_l, out_b, mem_d, bw


def partition(layer_times, layer_memory, boundary_bytes, memory, bandwidth, transfer_factor: float = 2.0) -> Partition:
    """Optimal contiguous split of ``n_layers`` over ``n_devices`` ordered devices (each gets at least one layer):
    the least bottleneck, and among the splits that reach it, the least total compute + transfer.

    ``layer_times[d, l]``: seconds of layer ``l`` on device ``d`` (forward + backward for training);
    ``layer_memory[l]``: bytes layer ``l`` needs resident (weights, optimiser state, stashed activations);
    ``boundary_bytes[l]``: bytes of layer ``l``'s output; ``memory[d]``: bytes device ``d`` has;
    ``bandwidth[d]``: bytes/s of the link from device ``d`` to ``d + 1``; ``transfer_factor``: crossings per
    step (2 in training: activations forward, gradients back).
    """
    t, mem_l, out_b, mem_d, bw = _check(layer_times, layer_memory, boundary_bytes, memory, bandwidth)
    n_dev, n_layers = t.shape
    prefix_t = np.concatenate([np.zeros((n_dev, 1)), np.cumsum(t, axis=1)], axis=1)
    prefix_m = np.concatenate([[0.0], np.cumsum(mem_l)])
    inf = float("inf")
    # best[s, j]: smallest bottleneck placing layers [0, j) on devices 0..s, device s ending at j.
    best = np.full((n_dev, n_layers + 1), inf)
    for j in range(1, n_layers + 1):
        if prefix_m[j] <= mem_d[0]:
            best[0, j] = prefix_t[0, j]
    for s in range(1, n_dev):
        for j in range(s + 1, n_layers + 1):
            for i in range(s, j):  # device s takes layers [i, j)
                if best[s - 1, i] == inf or prefix_m[j] - prefix_m[i] > mem_d[s]:
                    continue
                transfer = transfer_factor * out_b[i - 1] / bw[s - 1]
                value = max(best[s - 1, i], transfer, prefix_t[s, j] - prefix_t[s, i])
                best[s, j] = min(best[s, j], value)
    if best[n_dev - 1, n_layers] == inf:
        short = [d for d in range(n_dev) if mem_d[d] < mem_l.max()]
        hint = f"; devices {short} cannot hold even the largest layer ({mem_l.max():.3g} bytes)" if short else ""
        raise InfeasiblePartition(
            f"no split of {n_layers} layers over {n_dev} devices fits their memory "
            f"(total needed {prefix_m[-1]:.3g} bytes, available {mem_d.sum():.3g}){hint}"
        )
    starts = _least_total(best[n_dev - 1, n_layers], prefix_t, prefix_m, out_b, mem_d, bw, transfer_factor)
    return _evaluate(starts, t, out_b, bw, transfer_factor)


def _least_total(bottleneck, prefix_t, prefix_m, out_b, mem_d, bw, transfer_factor) -> list[int]:
    """Among the splits whose every stage and transfer stays within ``bottleneck`` (and memory), the one with
    the least total compute + transfer: the bottleneck alone ties across many splits when one link paces the
    pipeline, and the first tie found can be far worse than an even split (the pipeline's fill and drain)."""
    n_dev, n_layers = prefix_t.shape[0], prefix_t.shape[1] - 1
    cap = bottleneck * (1 + 1e-9) + 1e-15
    inf = float("inf")
    total = np.full((n_dev, n_layers + 1), inf)
    choice = np.full((n_dev, n_layers + 1), -1, dtype=int)
    for j in range(1, n_layers + 1):
        if prefix_m[j] <= mem_d[0] and prefix_t[0, j] <= cap:
            total[0, j] = prefix_t[0, j]
    for s in range(1, n_dev):
        for j in range(s + 1, n_layers + 1):
            for i in range(s, j):
                compute = prefix_t[s, j] - prefix_t[s, i]
                transfer = transfer_factor * out_b[i - 1] / bw[s - 1]
                if total[s - 1, i] == inf or prefix_m[j] - prefix_m[i] > mem_d[s] or max(compute, transfer) > cap:
                    continue
                value = total[s - 1, i] + compute + transfer
                if value < total[s, j]:
                    total[s, j], choice[s, j] = value, i
    starts, j = [], n_layers
    for s in range(n_dev - 1, 0, -1):
        i = int(choice[s, j])
        starts.append(i)
        j = i
    return [0] + starts[::-1]


def _evaluate(starts, t, out_b, bw, transfer_factor) -> Partition:
    n_dev, n_layers = t.shape
    ends = list(starts[1:]) + [n_layers]
    stage = tuple(float(t[s, a:b].sum()) for s, (a, b) in enumerate(zip(starts, ends)))
    transfer = (0.0,) + tuple(transfer_factor * float(out_b[starts[s] - 1]) / float(bw[s - 1]) for s in range(1, n_dev))
    return Partition(tuple(int(x) for x in starts), stage, transfer, max(stage + transfer))


def evaluate(starts, layer_times, boundary_bytes, bandwidth, transfer_factor: float = 2.0) -> Partition:
    """The stage and transfer times of a given split (for example an even split, the baseline)."""
    t = np.asarray(layer_times, dtype=float)
    return _evaluate(list(starts), t, np.asarray(boundary_bytes, float), np.asarray(bandwidth, float), transfer_factor)


def even_split(n_layers: int, n_devices: int) -> list[int]:
    """Starts of an even split by layer count (the baseline that ignores device speed)."""
    return [round(s * n_layers / n_devices) for s in range(n_devices)]
