"""The pipeline planner, in the emulator's terms: per-micro-batch compute and transfer on the links as ``tc``
shapes them, per-layer memory, and the splits the AccEPT ablation compares.

Units: one micro-batch. A stage's time is the forward + backward of its layers for one micro-batch; a link's
time is one micro-batch's activations forward plus its gradients back. Sends run asynchronously beside
compute (gloo), so the pipeline's steady state is paced by the slowest of these (the partitioner's
bottleneck), and a GPipe step lasts about ``sum(stage) + sum(link) + (n_micro - 1) * bottleneck``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .partition import Partition, evaluate, even_split, partition
from .pipeline import packed_len

OPTIMISER_STATES = 2  # Adam: first and second moments, one float each per parameter


def link_rates_mbit(bandwidth_mbit: list[float]) -> list[float]:
    """Rate of the link between consecutive devices: the emulator shapes each device's egress and the bridge's
    egress towards it, so a transfer goes at the slower end's rate."""
    return [min(a, b) for a, b in zip(bandwidth_mbit, bandwidth_mbit[1:])]


def wire_bytes(numel: int, bits: int | None) -> int:
    """Bytes one boundary tensor of ``numel`` values puts on the wire (packed codes, padding, min and step)."""
    return 4 * numel if bits is None else 4 * packed_len(numel, bits)


def layer_memory_bytes(layers: list[torch.nn.Module], example: torch.Tensor, in_flight: int) -> np.ndarray:
    """Per-layer resident bytes in training: parameters with their gradients and Adam's two moments, plus the
    activations autograd saves for the backward, for ``in_flight`` micro-batches at once (GPipe keeps all of
    a step's micro-batches in flight). Saved tensors are counted from one real forward of a micro-batch."""
    out, x = [], example
    for layer in layers:
        seen: dict[int, int] = {}

        def pack(t: torch.Tensor, seen=seen):
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        weights = {p.untyped_storage().data_ptr() for p in layer.parameters()}  # counted once, as parameters
        inp = x.detach().requires_grad_(x.is_floating_point())
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            y = layer(inp)
        params = sum(p.numel() * p.element_size() for p in layer.parameters())
        saved = sum(n for ptr, n in seen.items() if ptr not in weights)
        out.append(params * (2 + OPTIMISER_STATES) + in_flight * saved)
        x = y.detach()
    return np.asarray(out, dtype=float)


@dataclass(frozen=True)
class Plan:
    """A split and what the model predicts for it: per stage, compute and incoming link seconds per
    micro-batch, and the step time."""

    name: str
    starts: tuple[int, ...]
    bits: int | None
    stage_s: tuple[float, ...]
    link_s: tuple[float, ...]
    bottleneck_s: float
    step_s: float


def _plan(name: str, p: Partition, bits: int | None, n_micro: int) -> Plan:
    step = sum(p.stage_times) + sum(p.transfer_times) + (n_micro - 1) * p.bottleneck
    return Plan(name, p.starts, bits, p.stage_times, p.transfer_times, p.bottleneck, step)


class Planner:
    """Splits of one model over one cluster. ``layer_s[d, l]``: seconds of layer ``l``'s forward + backward
    for one micro-batch on device ``d`` (measured or predicted); ``boundary_numel``: values crossing a cut
    per micro-batch; ``memory_bytes[d]``: what device ``d`` has for layers; ``layer_memory``: per layer."""

    def __init__(self, boundary_numel, bandwidth_mbit, n_micro, layer_memory, memory_bytes):
        self.boundary_numel, self.n_micro = boundary_numel, n_micro
        self.link_bytes_s = [r * 1e6 / 8 for r in link_rates_mbit(list(bandwidth_mbit))]
        self.layer_memory, self.memory_bytes = np.asarray(layer_memory, float), np.asarray(memory_bytes, float)

    def _out_bytes(self, bits: int | None) -> np.ndarray:
        return np.full(len(self.layer_memory), float(wire_bytes(self.boundary_numel, bits)))

    def optimal(self, name: str, layer_s: np.ndarray, bits: int | None) -> Plan:
        """The DP split (PipeEdge's partitioner) minimising the bottleneck, within every device's memory;
        transfers count twice (activations forward, gradients back)."""
        p = partition(layer_s, self.layer_memory, self._out_bytes(bits), self.memory_bytes, self.link_bytes_s)
        return _plan(name, p, bits, self.n_micro)

    def fixed(self, name: str, starts, layer_s: np.ndarray, bits: int | None) -> Plan:
        """A given split (e.g. the even one) under the same model."""
        p = evaluate(list(starts), layer_s, self._out_bytes(bits), self.link_bytes_s)
        return _plan(name, p, bits, self.n_micro)

    def even(self, name: str, layer_s: np.ndarray, bits: int | None) -> Plan:
        return self.fixed(name, even_split(layer_s.shape[1], layer_s.shape[0]), layer_s, bits)

    def fits(self, starts) -> list[float]:
        """Estimated bytes each stage of a split needs (compare with ``memory_bytes``)."""
        ends = list(starts[1:]) + [len(self.layer_memory)]
        return [float(self.layer_memory[a:b].sum()) for a, b in zip(starts, ends)]
