"""DPAC (deep online PAC) training: backbone + clustering head + projection head, trained with
:class:`~replab.clustering.online.OnlinePAC` on two augmented views, after an optional SimCLR warm-up.

The paper trains a ResNet-34 on CIFAR/STL; here the same loop runs a small CNN on 8x8 digits (scaled down).
Checkpoints are safetensors files (tensors only, nothing unpickled when loading).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..progress import tqdm
from .online import OnlinePAC, info_nce

log = logging.getLogger(__name__)


@dataclass
class DPACConfig:
    n_clusters: int = 10
    channels: int = 1
    backbone: str = "small_cnn"  # small_cnn (8x8 digits) | resnet18 (CIFAR-style stem, for 32x32 images)
    width: int = 32  # channels of the first conv layer
    feature_dim: int = 64
    projection_dim: int = 128
    m: float = 1.03
    temperature: float = 0.5
    warmup_epochs: int = 20  # SimCLR (InfoNCE only) before the clustering loss
    augment_strength: float = 1.0  # scales the geometric ranges, the pixel noise and the erased patch
    epochs: int = 60
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0


class SmallCNN(nn.Module):
    """Backbone for small images: three 3x3 conv blocks and global average pooling."""

    def __init__(self, width: int = 32, feature_dim: int = 64, channels: int = 1):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * width, feature_dim, 3, padding=1),
            nn.BatchNorm2d(feature_dim),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )

    def forward(self, x):
        return self.net(x)


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = nn.Sequential()
        if stride != 1 or cin != cout:
            self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.skip(x))


class ResNet18(nn.Module):
    """ResNet-18 with the CIFAR stem (3x3 conv, no max-pool), as contrastive-clustering papers use for 32x32
    images; the feature is the 512-d pooled output. (torchvision's resnet18 has the ImageNet stem, and
    torchvision does not install beside this project's pinned torch.)"""

    def __init__(self, channels: int = 3, width: int = 64):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        layers, cin = [], width
        for i, cout in enumerate([width, 2 * width, 4 * width, 8 * width]):
            stride = 1 if i == 0 else 2
            layers += [_BasicBlock(cin, cout, stride), _BasicBlock(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.out_dim = cin

    def forward(self, x):
        return F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1).flatten(1)


def dpac_heads(feature_dim: int, n_clusters: int, projection_dim: int) -> tuple[nn.Linear, nn.Sequential]:
    """DPAC's linear clustering head and MLP projection head on ``feature_dim`` features (created in this order,
    so a seed gives the same weights wherever they are built)."""
    cluster_head = nn.Linear(feature_dim, n_clusters)
    projection_head = nn.Sequential(
        nn.Linear(feature_dim, feature_dim),
        nn.ReLU(),
        nn.Linear(feature_dim, projection_dim),
    )
    return cluster_head, projection_head


class DPAC(nn.Module):
    def __init__(self, config: DPACConfig):
        super().__init__()
        self.config = config
        if config.backbone == "resnet18":
            self.backbone = ResNet18(config.channels)
            if config.feature_dim != self.backbone.out_dim:
                raise ValueError(f"feature_dim must be {self.backbone.out_dim} for resnet18, got {config.feature_dim}")
        elif config.backbone == "small_cnn":
            self.backbone = SmallCNN(config.width, config.feature_dim, config.channels)
        else:
            raise ValueError(f"backbone must be 'small_cnn' or 'resnet18', got {config.backbone!r}")
        heads = dpac_heads(config.feature_dim, config.n_clusters, config.projection_dim)
        self.cluster_head, self.projection_head = heads

    def forward(self, x):
        h = self.backbone(x)
        return h, self.cluster_head(h), self.projection_head(h)

    @torch.no_grad()
    def embed(self, images: torch.Tensor, batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """``(features, cluster probabilities)`` in eval mode."""
        self.eval()
        device = next(self.parameters()).device
        feats, probs = [], []
        for start in range(0, len(images), batch_size):
            h, logits, _ = self(images[start : start + batch_size].to(device))
            feats.append(h.cpu())
            probs.append(torch.softmax(logits, 1).cpu())
        return torch.cat(feats).numpy(), torch.cat(probs).numpy()


def augment(x: torch.Tensor, generator: torch.Generator, strength: float = 1.0) -> torch.Tensor:
    """A random view of a batch of images (N, 1, H, W) in [0, 1]: small rotation, scale and shift, pixel
    noise, and a random erased patch — the digit analogue of SimCLR's crop/colour augmentations. ``strength``
    scales the rotation (±15°), scale (±10 %) and shift (±15 %) ranges, the noise (0.05) and the patch side (2 px)."""
    n = x.shape[0]
    angle = (torch.rand(n, generator=generator) - 0.5) * (strength * math.pi / 6)
    scale = 1 - 0.1 * strength + 0.2 * strength * torch.rand(n, generator=generator)
    shift = (torch.rand(n, 2, generator=generator) - 0.5) * (0.3 * strength)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")
    if x.shape[1] == 3:  # colour images: horizontal flips and brightness/contrast jitter, as in SimCLR
        flip = torch.rand(n, generator=generator) < 0.5
        out = torch.where(flip[:, None, None, None], out.flip(-1), out)
        mean = out.mean(dim=(1, 2, 3), keepdim=True)
        contrast = 0.6 + 0.8 * torch.rand(n, 1, 1, 1, generator=generator)
        brightness = 0.4 * (torch.rand(n, 1, 1, 1, generator=generator) - 0.5)
        out = (out - mean) * contrast + mean + brightness
    out = out + (0.05 * strength) * torch.randn(out.shape, generator=generator)
    h, w = x.shape[-2:]
    side = max(1, round(2 * strength))
    top = torch.randint(0, h - 1, (n,), generator=generator)
    left = torch.randint(0, w - 1, (n,), generator=generator)
    erase = torch.rand(n, generator=generator) < 0.5
    rows = torch.arange(h)[None, :, None]
    cols = torch.arange(w)[None, None, :]
    patch = (
        (rows >= top[:, None, None])
        & (rows < top[:, None, None] + side)
        & (cols >= left[:, None, None])
        & (cols < left[:, None, None] + side)
    )
    out = torch.where((patch & erase[:, None, None])[:, None], torch.zeros_like(out), out)
    return out.clamp(0, 1)


@dataclass
class TrainingHistory:
    epoch: list[int] = field(default_factory=list)
    phase: list[str] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    kl: list[float] = field(default_factory=list)
    info_nce: list[float] = field(default_factory=list)


def train(
    images: torch.Tensor, config: DPACConfig, progress: bool = True, device: str = "cpu"
) -> tuple[DPAC, TrainingHistory]:
    """Train on ``images`` (N, C, H, W) in [0, 1] with C = ``config.channels``; deterministic for a given
    ``config.seed`` on the CPU. Augmentation runs on the CPU; batches move to ``device``."""
    if images.ndim != 4 or images.shape[1] != config.channels:
        raise ValueError(f"images must be (N, {config.channels}, H, W), got {tuple(images.shape)}")
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = DPAC(config).to(device)
    loss_fn = OnlinePAC(config.m, config.temperature)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    history = TrainingHistory()
    total = config.warmup_epochs + config.epochs
    bar = tqdm(range(total), desc="DPAC", disable=not progress)
    for epoch in bar:
        phase = "simclr" if epoch < config.warmup_epochs else "dpac"
        model.train()
        order = torch.randperm(len(images), generator=generator)
        sums = {"loss": 0.0, "kl": 0.0, "info_nce": 0.0}
        batches = 0
        for start in range(0, len(images), config.batch_size):
            batch = images[order[start : start + config.batch_size]]
            if len(batch) < 2:
                continue
            v1 = augment(batch, generator, config.augment_strength).to(device)
            v2 = augment(batch, generator, config.augment_strength).to(device)
            h1, logits1, z1 = model(v1)
            _, _, z2 = model(v2)
            if phase == "simclr":
                nce = info_nce(z1, z2, config.temperature)
                out = {"loss": nce, "kl": torch.tensor(float("nan")), "info_nce": nce}
            else:
                out = loss_fn(h1, logits1, z1, z2)
            optimiser.zero_grad()
            out["loss"].backward()
            optimiser.step()
            for key in sums:
                sums[key] += float(out[key].detach())
            batches += 1
        history.epoch.append(epoch)
        history.phase.append(phase)
        for key in sums:
            getattr(history, key).append(sums[key] / max(batches, 1))
        bar.set_postfix(phase=phase, loss=f"{history.loss[-1]:.3f}")
    return model, history


def save_checkpoint(model: DPAC, path: Path, history: TrainingHistory | None = None) -> Path:
    """``path`` (.safetensors) with the weights; the config (and history) in the same file's metadata."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # One metadata entry: safetensors writes its metadata map in a random order per process, so several keys
    # would give different bytes for the same weights.
    payload = {"config": asdict(model.config), "history": asdict(history) if history is not None else None}
    metadata = {"replab": json.dumps(payload, sort_keys=True)}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp), metadata=metadata)
    tmp.replace(path)
    return path


def load_checkpoint(path: Path) -> DPAC:
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    # Checkpoints written before the single "replab" entry kept the config under its own key.
    config = DPACConfig(
        **(json.loads(metadata["replab"])["config"] if "replab" in metadata else json.loads(metadata["config"]))
    )
    model = DPAC(config)
    model.load_state_dict(load_file(str(path), device="cpu"))
    return model.eval()


def digits_images(X: np.ndarray) -> torch.Tensor:
    """scikit-learn digits (N, 64) in 0..16 -> (N, 1, 8, 8) in [0, 1]."""
    return torch.from_numpy(np.asarray(X, dtype=np.float32).reshape(-1, 1, 8, 8) / 16.0)
