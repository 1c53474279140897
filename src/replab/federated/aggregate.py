"""FedAvg over trainable states, the bytes a state costs on the wire, and the error of averaging LoRA's
factors A and B separately instead of their product B A."""

from __future__ import annotations

import numpy as np
import torch

from .methods import adapter_pairs


def fedavg(states: list[dict[str, torch.Tensor]], weights: list[float]) -> dict[str, torch.Tensor]:
    """Weighted mean of each tensor (weights: the clients' sample counts)."""
    if not states or len(states) != len(weights):
        raise ValueError(f"{len(states)} states for {len(weights)} weights")
    w = np.asarray(weights, dtype=np.float64)
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError("weights must be non-negative with a positive sum")
    w = w / w.sum()
    keys = states[0].keys()
    if any(s.keys() != keys for s in states):
        raise ValueError("clients returned different parameter sets")
    return {k: sum(float(wi) * s[k].double() for wi, s in zip(w, states)).to(states[0][k].dtype) for k in keys}


def factor_averaging_error(states: list[dict[str, torch.Tensor]], weights: list[float]) -> float:
    """|| mean(B) mean(A) - mean(B A) ||_F / || mean(B A) ||_F over all adapted layers together: how far
    FedAvg of the factors is from averaging the updates themselves (0 when clients agree)."""
    pairs = adapter_pairs(states[0])
    if not pairs:
        return 0.0
    avg = fedavg(states, weights)
    w = np.asarray(weights, dtype=np.float64) / float(np.sum(weights))
    num = den = 0.0
    for a, b in pairs:
        product_of_means = avg[b].double() @ avg[a].double()
        mean_of_products = sum(float(wi) * (s[b].double() @ s[a].double()) for wi, s in zip(w, states))
        num += float(torch.sum((product_of_means - mean_of_products) ** 2))
        den += float(torch.sum(mean_of_products**2))
    return float(np.sqrt(num / den)) if den > 0 else 0.0


def message_bytes(state: dict[str, torch.Tensor]) -> int:
    """Bytes of the state as Flower sends it (an ``ArrayRecord``'s serialised arrays)."""
    from flwr.app import ArrayRecord

    return int(ArrayRecord({k: v.detach().cpu().contiguous() for k, v in state.items()}).count_bytes())
