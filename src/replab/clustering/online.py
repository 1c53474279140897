"""Online PAC and the DPAC loss (torch): usable in any training loop."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..kernels.pac_aggregate import pac_target


def info_nce(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """NT-Xent (SimCLR's InfoNCE) over two views: each sample's other view is its positive, the other
    2B - 2 samples are negatives."""
    if z1.shape != z2.shape:
        raise ValueError(f"the two views differ in shape: {tuple(z1.shape)} vs {tuple(z2.shape)}")
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    n = z1.shape[0]
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, positives)


class OnlinePAC(nn.Module):
    """DPAC's clustering loss for one mini-batch.

    ``target = pac_target(features, softmax(logits))`` (no gradient): the online PAC assignment
    ``q^_ik ∝ G_ik^(-1/(m-1))``, ``G = D q`` with ``D`` the batch's cosine distances. The loss is
    ``KL(q^ || softmax(logits))``, plus InfoNCE on the projections of two views when they are given.
    """

    def __init__(
        self, m: float = 1.03, temperature: float = 0.5, contrastive_weight: float = 1.0, backend: str = "auto"
    ):
        super().__init__()
        if not m > 1:
            raise ValueError(f"m must be > 1, got {m}")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.m, self.temperature, self.contrastive_weight, self.backend = m, temperature, contrastive_weight, backend

    def target(self, features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        return pac_target(features.detach(), torch.softmax(logits.detach(), dim=1), self.m, self.backend)

    def forward(
        self,
        features: torch.Tensor,
        logits: torch.Tensor,
        projection1: torch.Tensor | None = None,
        projection2: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        target = self.target(features, logits)
        kl = F.kl_div(F.log_softmax(logits, dim=1), target, reduction="batchmean")
        out = {"target": target, "kl": kl, "loss": kl}
        if projection1 is not None and projection2 is not None:
            nce = info_nce(projection1, projection2, self.temperature)
            out["info_nce"] = nce
            out["loss"] = kl + self.contrastive_weight * nce
        return out

    def extra_repr(self) -> str:
        return f"m={self.m}, temperature={self.temperature}, contrastive_weight={self.contrastive_weight}"
