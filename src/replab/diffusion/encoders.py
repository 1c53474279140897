"""Identity encoders on face crops: the conditioning encoder (a CNN trained with ArcFace's additive angular margin,
the stand-in for the paper's frozen ArcFace) and the independent evaluator (another architecture, another loss,
another seed, another crop), trained only to score the outputs.

Both learn from the training identities only; on held-out identities they are used as embedders (cosine to a
gallery), as ArcFace is on faces it never saw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .fit import fit


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (n, H, W, 3) -> float (n, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1


def face_crops(
    images: torch.Tensor, boxes: torch.Tensor, size: int, margin: float = 1.15, jitter: torch.Tensor | None = None
) -> torch.Tensor:
    """Square crops (n, 3, size, size) around each face box (x0, y0, x1, y1 in pixels), ``margin`` times the box's
    longer side, resampled bilinearly. ``jitter`` (n, 3): shifts (x, y) and log-scale, in box sides (training
    augmentation: generated faces are not placed exactly)."""
    n, _, h, w = images.shape
    boxes = boxes.float()
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    side = torch.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) * margin
    if jitter is not None:
        cx, cy, side = cx + jitter[:, 0] * side, cy + jitter[:, 1] * side, side * torch.exp(jitter[:, 2])
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = side / w, side / h
    theta[:, 0, 2], theta[:, 1, 2] = cx / w * 2 - 1, cy / h * 2 - 1
    grid = F.affine_grid(theta, (n, 3, size, size), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


class ArcMarginHead(nn.Module):
    """ArcFace's head: logits ``s cos(theta + m)`` for the true class, ``s cos(theta)`` for the others, with
    ``theta`` the angle between the normalised embedding and the class's normalised weight (Deng et al. 2019)."""

    def __init__(self, dim: int, classes: int, scale: float = 16.0, margin: float = 0.3):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(classes, dim) / math.sqrt(dim))
        self.scale, self.margin = scale, margin

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos = F.linear(F.normalize(embeddings), F.normalize(self.weight)).clamp(-1 + 1e-6, 1 - 1e-6)
        theta = torch.acos(cos)
        # Past pi - m the margin would turn the angle back; there ArcFace uses cos(theta) - m sin(m) instead.
        fallback = cos - self.margin * math.sin(self.margin)
        target = torch.where(theta < math.pi - self.margin, torch.cos(theta + self.margin), fallback)
        onehot = F.one_hot(labels, cos.shape[1]).bool()
        return self.scale * torch.where(onehot, target, cos)


class NormSoftmaxHead(nn.Module):
    """The evaluator's head: a temperature-scaled cosine softmax without a margin (a different loss from the
    conditioning encoder's)."""

    def __init__(self, dim: int, classes: int, scale: float = 12.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(classes, dim) / math.sqrt(dim))
        self.scale = scale

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        del labels
        return self.scale * F.linear(F.normalize(embeddings), F.normalize(self.weight))


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU())


class IdentityCNN(nn.Module):
    """The conditioning encoder: strided convolutions, global average pooling, a linear embedding."""

    def __init__(self, dim: int = 64, width: int = 32):
        super().__init__()
        self.features = nn.Sequential(
            _block(3, width),
            nn.Conv2d(width, width * 2, 3, stride=2, padding=1),
            _block(width * 2, width * 2),
            nn.Conv2d(width * 2, width * 4, 3, stride=2, padding=1),
            _block(width * 4, width * 4),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.embed = nn.Linear(width * 4, dim)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return self.embed(self.features(crops))


class EvaluatorCNN(nn.Module):
    """The independent evaluator: residual blocks with max pooling and a flattened (position-aware) head, unlike
    the conditioning encoder's strided, pooled design."""

    def __init__(self, dim: int = 96, width: int = 32, crop: int = 24):
        super().__init__()
        self.stem = _block(3, width)
        self.res1 = nn.Sequential(_block(width, width), nn.Conv2d(width, width, 3, padding=1))
        self.res2 = nn.Sequential(_block(width, width), nn.Conv2d(width, width, 3, padding=1))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(width * (crop // 4) ** 2, dim))

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        x = self.stem(crops)
        x = F.max_pool2d(F.silu(x + self.res1(x)), 2)
        x = F.max_pool2d(F.silu(x + self.res2(x)), 2)
        return self.head(x)


@dataclass(frozen=True)
class CropSpec:
    """How an encoder sees a face: crop side in pixels and margin around the box."""

    size: int
    margin: float


CONDITIONING_CROP = CropSpec(size=16, margin=1.15)
EVALUATOR_CROP = CropSpec(size=24, margin=1.35)


def train_encoder(
    encoder: nn.Module,
    head: nn.Module,
    images: torch.Tensor,
    boxes: torch.Tensor,
    labels: torch.Tensor,
    crop: CropSpec,
    *,
    steps: int,
    batch: int,
    lr: float,
    seed: int,
    desc: str,
) -> list[float]:
    """Train ``encoder`` + ``head`` on jittered face crops to classify ``labels`` (training identities); returns
    the loss per step. The encoder is left in eval mode with gradients off (it is frozen from here)."""
    params = [*encoder.parameters(), *head.parameters()]

    def step(generator: torch.Generator) -> torch.Tensor:
        idx = torch.randint(len(images), (batch,), generator=generator)
        jitter = (torch.rand(batch, 3, generator=generator) - 0.5) * torch.tensor([0.16, 0.16, 0.2])
        crops = face_crops(images[idx], boxes[idx], crop.size, crop.margin, jitter)
        return F.cross_entropy(head(encoder(crops), labels[idx]), labels[idx])

    encoder.train()
    losses = fit(step, params, steps=steps, lr=lr, seed=seed, desc=desc)
    encoder.eval().requires_grad_(False)
    return losses


@torch.no_grad()
def embed(encoder: nn.Module, images: torch.Tensor, boxes: torch.Tensor, crop: CropSpec, chunk: int = 512):
    """Unit-norm identity embeddings (n, dim) of the faces at ``boxes`` in ``images`` ((n, 3, H, W) in [-1, 1])."""
    out = [
        F.normalize(encoder(face_crops(images[i : i + chunk], boxes[i : i + chunk], crop.size, crop.margin)))
        for i in range(0, len(images), chunk)
    ]
    return torch.cat(out) if out else torch.zeros(0)


def identify(embeddings: torch.Tensor, gallery: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each embedding's best gallery row and its cosine to every row: (predicted index (n,), cosines (n, rows)).
    ``gallery`` rows are unit-norm identity prototypes."""
    cos = F.normalize(embeddings) @ F.normalize(gallery).T
    return cos.argmax(dim=1), cos
