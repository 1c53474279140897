"""FaceStudio's hybrid guidance: the image branch ``e_i = Linear(e_h || e_f)`` and the text branch
``e_p = Linear(e_T || e_f)`` share one Linear; ``e_g = alpha e_i + (1 - alpha) e_p`` is the UNet's cross-attention
context, replacing the text tokens. Several references of one identity, or several identities blended, enter as
``e_f = sum_i beta_i e_f^i``.
"""

from __future__ import annotations

import torch
from torch import nn


def mix_identities(embeddings: torch.Tensor, betas: torch.Tensor | list[float]) -> torch.Tensor:
    """``sum_i beta_i e_f^i`` over the references axis: ``embeddings`` (batch, n, d), ``betas`` (n,) or
    (batch, n). Betas need not sum to 1 (the paper's identity blending); equal betas of 1/n average N references."""
    betas = torch.as_tensor(betas, dtype=embeddings.dtype, device=embeddings.device)
    if betas.shape[-1] != embeddings.shape[1]:
        raise ValueError(f"{betas.shape[-1]} betas for {embeddings.shape[1]} identity embeddings")
    return (
        torch.einsum("bnd,...n->bd", embeddings, betas)
        if betas.ndim == 1
        else torch.einsum("bnd,bn->bd", embeddings, betas)
    )


class HybridCondition(nn.Module):
    """The condition tokens: one shared ``Linear(d_clip + d_face -> tokens x d_model)`` for both branches.

    ``forward(e_h, e_t, e_f, alpha)``: ``e_h`` the style image's CLIP image embedding, ``e_t`` the prior's image
    embedding from the caption (either may be None: then ``alpha`` is 1 or 0), ``e_f`` the identity embedding
    (zeros for "no identity", the classifier-free-guidance null). Returns (batch, tokens, d_model)."""

    def __init__(self, clip_dim: int, face_dim: int, model_dim: int, tokens: int = 4):
        super().__init__()
        self.clip_dim, self.face_dim, self.model_dim, self.tokens = clip_dim, face_dim, model_dim, tokens
        self.proj = nn.Linear(clip_dim + face_dim, tokens * model_dim)

    def branch(self, e_clip: torch.Tensor, e_f: torch.Tensor) -> torch.Tensor:
        """One branch, ``Linear(e_clip || e_f)``, as tokens (batch, tokens, d_model), on the module's device."""
        device = self.proj.weight.device
        out = self.proj(torch.cat([e_clip.to(device), e_f.to(device)], dim=-1))
        return out.view(*out.shape[:-1], self.tokens, self.model_dim)

    def forward(
        self,
        e_h: torch.Tensor | None,
        e_t: torch.Tensor | None,
        e_f: torch.Tensor,
        alpha: float | torch.Tensor = 1.0,
    ) -> torch.Tensor:
        if e_h is None and e_t is None:
            raise ValueError("give the style image embedding e_h, the text branch's e_t, or both")
        if e_t is None:
            return self.branch(e_h, e_f)
        if e_h is None:
            return self.branch(e_t, e_f)
        alpha = torch.as_tensor(alpha, dtype=e_f.dtype, device=self.proj.weight.device)
        if alpha.ndim == 1:  # one alpha per sample
            alpha = alpha[:, None, None]
        return alpha * self.branch(e_h, e_f) + (1 - alpha) * self.branch(e_t, e_f)
