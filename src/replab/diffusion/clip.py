"""The stand-ins for CLIP and DALL-E 2's prior: transformers' CLIP vision and text towers at a tiny size, trained
contrastively on (face-masked portrait, caption) pairs, and an MLP prior that maps a caption's CLIP text
embedding to the CLIP image embedding of a matching style image (the text branch's ``e_T``).

The captions come from a closed vocabulary (the portrait builder's style words), so the tokenizer is a word list;
CLIP's BPE would split the same words no differently here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPVisionConfig, CLIPVisionModelWithProjection

from .fit import fit

PAD, BOS, EOS = 0, 1, 2


class CaptionTokenizer:
    """Whole words to ids (0 pad, 1 start, 2 end), from the captions it is built on."""

    def __init__(self, captions: list[str], max_length: int = 24):
        words = sorted({w for c in captions for w in self._words(c)})
        self.vocab = {w: i + 3 for i, w in enumerate(words)}
        self.max_length = max_length

    @staticmethod
    def _words(caption: str) -> list[str]:
        return caption.replace(",", " ,").split()

    def __len__(self) -> int:
        return len(self.vocab) + 3

    def __call__(self, captions: list[str]) -> torch.Tensor:
        rows = []
        for c in captions:
            unknown = [w for w in self._words(c) if w not in self.vocab]
            if unknown:
                raise ValueError(f"caption {c!r} has words outside the vocabulary: {unknown}")
            ids = [BOS, *(self.vocab[w] for w in self._words(c)), EOS]
            if len(ids) > self.max_length:
                raise ValueError(f"caption {c!r} is longer than {self.max_length} tokens")
            rows.append(ids + [PAD] * (self.max_length - len(ids)))
        return torch.tensor(rows)


@dataclass(frozen=True)
class ClipConfig:
    image_size: int = 32
    patch: int = 4
    width: int = 64
    layers: int = 2
    heads: int = 4
    dim: int = 32  # the shared embedding: e_h, e_T


class TinyClip(nn.Module):
    """CLIP's two towers with projections (``get_image_features``/``get_text_features`` in CLIPModel's terms)."""

    def __init__(self, tokenizer: CaptionTokenizer, config: ClipConfig = ClipConfig()):
        super().__init__()
        self.tokenizer, self.config = tokenizer, config
        common = dict(
            hidden_size=config.width,
            intermediate_size=config.width * 2,
            num_hidden_layers=config.layers,
            num_attention_heads=config.heads,
            projection_dim=config.dim,
        )
        self.vision = CLIPVisionModelWithProjection(
            CLIPVisionConfig(image_size=config.image_size, patch_size=config.patch, **common)
        )
        self.text = CLIPTextModelWithProjection(
            CLIPTextConfig(
                vocab_size=len(tokenizer),
                max_position_embeddings=tokenizer.max_length,
                pad_token_id=PAD,
                bos_token_id=BOS,
                eos_token_id=EOS,
                **common,
            )
        )
        self.logit_scale = nn.Parameter(torch.tensor(2.659))  # log(1 / 0.07), CLIP's initial temperature

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """(n, 3, H, W) in [-1, 1] -> unit-norm (n, dim)."""
        return F.normalize(self.vision(pixel_values=images).image_embeds, dim=-1)

    def encode_text(self, captions: list[str]) -> torch.Tensor:
        ids = self.tokenizer(captions)
        return F.normalize(self.text(input_ids=ids, attention_mask=(ids != PAD).long()).text_embeds, dim=-1)


def train_clip(
    clip: TinyClip, images: torch.Tensor, captions: list[str], *, steps: int, batch: int, lr: float, seed: int
) -> list[float]:
    """CLIP's symmetric InfoNCE over (image, caption) pairs; the model is frozen afterwards."""

    def step(generator: torch.Generator) -> torch.Tensor:
        idx = torch.randint(len(images), (batch,), generator=generator)
        logits = (
            clip.logit_scale.exp().clamp(max=100)
            * clip.encode_images(images[idx])
            @ clip.encode_text([captions[i] for i in idx.tolist()]).T
        )
        # Captions repeat across images (a closed vocabulary): every pair with the same caption is a positive.
        same = torch.tensor([[captions[i] == captions[j] for j in idx.tolist()] for i in idx.tolist()])
        target = same.float() / same.sum(dim=1, keepdim=True)
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target.T)) / 2

    clip.train()
    losses = fit(step, clip.parameters(), steps=steps, lr=lr, seed=seed, desc="tiny CLIP", weight_decay=0.01)
    clip.eval().requires_grad_(False)
    return losses


class EmbeddingPrior(nn.Module):
    """Text embedding -> image embedding (unit norm): the MLP form of DALL-E 2's prior the issue allows."""

    def __init__(self, dim: int, hidden: int = 256):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
        self.out = nn.Linear(hidden, dim)

    def forward(self, text_embeds: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.out(self.net(text_embeds)) + text_embeds, dim=-1)


def train_prior(
    prior: EmbeddingPrior,
    text_embeds: torch.Tensor,
    image_embeds: torch.Tensor,
    *,
    steps: int,
    batch: int,
    lr: float,
    seed: int,
) -> list[float]:
    """Fit the prior to pairs (caption's text embedding, its image's embedding) by cosine distance."""

    def step(generator: torch.Generator) -> torch.Tensor:
        idx = torch.randint(len(text_embeds), (batch,), generator=generator)
        return (1 - (prior(text_embeds[idx]) * image_embeds[idx]).sum(dim=-1)).mean()

    prior.train()
    losses = fit(step, prior.parameters(), steps=steps, lr=lr, seed=seed, desc="prior")
    prior.eval().requires_grad_(False)
    return losses


@torch.no_grad()
def encode_images(clip: TinyClip, images: torch.Tensor, chunk: int = 512) -> torch.Tensor:
    return torch.cat([clip.encode_images(images[i : i + chunk]) for i in range(0, len(images), chunk)])


@torch.no_grad()
def encode_text(clip: TinyClip, captions: list[str], chunk: int = 512) -> torch.Tensor:
    return torch.cat([clip.encode_text(captions[i : i + chunk]) for i in range(0, len(captions), chunk)])
