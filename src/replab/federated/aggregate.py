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


def factor_averaging_error(
    states: list[dict[str, torch.Tensor]], weights: list[float], sent: dict[str, torch.Tensor] | None = None
) -> dict[str, float]:
    """How far FedAvg of the factors, mean(B) mean(A), is from averaging the products, mean(B A), over all
    adapted layers together (Frobenius norms; 0 when clients agree): relative to ``mean(B A)`` itself
    (``vs_product``) and, given the round's broadcast state ``sent``, relative to the round's update
    ``mean(B A) - B_sent A_sent`` (``vs_update``: the share of the averaged update that the factorisation
    distorts; SVD inits start from large B A, so the first ratio is small even when the second is not)."""
    pairs = adapter_pairs(states[0])
    if not pairs:
        raise ValueError("the states have no LoRA factor pairs")
    avg = fedavg(states, weights)
    w = np.asarray(weights, dtype=np.float64) / float(np.sum(weights))
    num = product = update = 0.0
    for a, b in pairs:
        product_of_means = avg[b].double() @ avg[a].double()
        mean_of_products = sum(float(wi) * (s[b].double() @ s[a].double()) for wi, s in zip(w, states))
        num += float(torch.sum((product_of_means - mean_of_products) ** 2))
        product += float(torch.sum(mean_of_products**2))
        if sent is not None:
            start = sent[b].double() @ sent[a].double()
            update += float(torch.sum((mean_of_products - start) ** 2))
    out = {"vs_product": float(np.sqrt(num / product)) if product > 0 else 0.0}
    if sent is not None:
        out["vs_update"] = float(np.sqrt(num / update)) if update > 0 else 0.0
    return out


def message_bytes(state: dict[str, torch.Tensor]) -> int:
    """Bytes of the state as Flower sends it (an ``ArrayRecord``'s serialised arrays)."""
    from flwr.app import ArrayRecord

    return int(ArrayRecord({k: v.detach().cpu().contiguous() for k, v in state.items()}).count_bytes())
