"""DPAC on the features of a frozen, pretrained encoder.

The features are computed once (the packaged MiniLM on WordNet glosses, or a SimCLR-pretrained digits CNN); a
trainable MLP trunk with DPAC's clustering and projection heads is trained on them with DPAC's own loss
(:class:`~replab.clustering.online.OnlinePAC`: KL to the online PAC target, plus InfoNCE between two views), as
SCAN/TEMI-style pipelines train heads on frozen encoders. The target's cosine distances are taken on the frozen
features by default (the frozen encoder is DPAC's backbone here; the paper's backbone is trained, so its target
moves with it), or on the trunk's (``target_features="trunk"``). A view of a sample is its feature with Gaussian
noise and feature dropout (``views="noise"``); with ``views="neighbours"`` the second view is a noisy copy of one
of the sample's nearest neighbours in the frozen space instead (the neighbours SCAN mines): it changes InfoNCE's
positive pair only; the loss is DPAC's, not SCAN's neighbour-consistency loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..progress import tqdm
from .dpac import dpac_heads
from .online import OnlinePAC, info_nce


@dataclass
class FrozenDPACConfig:
    n_clusters: int = 10
    hidden_dim: int = 512
    feature_dim: int = 128  # the trunk's output (the PAC target's features where target_features="trunk")
    projection_dim: int = 128
    views: Literal["noise", "neighbours"] = "noise"
    noise: float = 0.1  # Gaussian noise, in units of each (standardised) input dimension's std
    dropout: float = 0.1  # feature dropout in each view
    n_neighbours: int = 10  # views="neighbours": the second view comes from one of these
    # The features the PAC target's distances are taken on: the frozen encoder's (DPAC's backbone is the frozen
    # encoder here) or the trainable trunk's.
    target_features: Literal["frozen", "trunk"] = "frozen"
    m: float = 1.03
    temperature: float = 0.5
    warmup_epochs: int = 0  # InfoNCE only, before the clustering loss (DPAC's SimCLR warm-up)
    epochs: int = 100
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0

    def __post_init__(self):
        if self.views not in ("noise", "neighbours"):
            raise ValueError(f"views must be 'noise' or 'neighbours', got {self.views!r}")
        if self.target_features not in ("frozen", "trunk"):
            raise ValueError(f"target_features must be 'frozen' or 'trunk', got {self.target_features!r}")
        if self.n_clusters < 2 or self.epochs < 1 or self.warmup_epochs < 0 or self.batch_size < 2:
            raise ValueError("need n_clusters >= 2, epochs >= 1, warmup_epochs >= 0 and batch_size >= 2")
        if not 0 <= self.dropout < 1 or self.noise < 0 or self.n_neighbours < 1:
            raise ValueError("need 0 <= dropout < 1, noise >= 0 and n_neighbours >= 1")


class FeatureHeads(nn.Module):
    """MLP trunk + DPAC's linear clustering head and MLP projection head, on fixed-size input features."""

    def __init__(self, input_dim: int, config: FrozenDPACConfig):
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Linear(input_dim, config.hidden_dim),
            nn.BatchNorm1d(config.hidden_dim),
            nn.ReLU(),
            nn.Linear(config.hidden_dim, config.feature_dim),
        )
        heads = dpac_heads(config.feature_dim, config.n_clusters, config.projection_dim)
        self.cluster_head, self.projection_head = heads

    def forward(self, x):
        h = self.trunk(x)
        return h, self.cluster_head(h), self.projection_head(h)


@dataclass
class FrozenHistory:
    epoch: list[int] = field(default_factory=list)
    phase: list[str] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    kl: list[float] = field(default_factory=list)
    info_nce: list[float] = field(default_factory=list)
    clusters_used: list[int] = field(default_factory=list)  # distinct head argmaxes on the clean features


class FrozenDPAC:
    """Scikit-learn style: ``FrozenDPAC(config).fit(features)``, then ``labels_``, ``predict``,
    ``predict_proba``, ``history_``. Deterministic for a given ``config.seed`` on the CPU with the same thread
    count and BLAS (it seeds torch's global generator)."""

    def __init__(self, config: FrozenDPACConfig | None = None, progress: bool = False):
        self.config = config or FrozenDPACConfig()
        self.progress = progress

    def fit(self, features: np.ndarray) -> FrozenDPAC:
        c = self.config
        x = np.asarray(features, dtype=np.float32)
        if x.ndim != 2 or x.shape[0] < c.n_clusters or not np.isfinite(x).all():
            raise ValueError(f"features must be a finite (N >= {c.n_clusters}, d) array, got shape {x.shape}")
        # Standardised inputs: MiniLM's unit vectors have per-dimension scales near 1/sqrt(d).
        self.mean_, self.scale_ = x.mean(0), x.std(0) + 1e-6
        inputs = torch.from_numpy((x - self.mean_) / self.scale_)
        frozen = torch.from_numpy(x)  # the encoder's own features, for the PAC target's cosine distances
        neighbours = _nearest_neighbours(x, c.n_neighbours) if c.views == "neighbours" else None
        torch.manual_seed(c.seed)
        generator = torch.Generator().manual_seed(c.seed)
        self.model_ = FeatureHeads(x.shape[1], c)
        loss_fn = OnlinePAC(c.m, c.temperature)
        optimiser = torch.optim.Adam(self.model_.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        self.history_ = history = FrozenHistory()
        bar = tqdm(range(c.warmup_epochs + c.epochs), desc="DPAC heads", disable=not self.progress)
        for epoch in bar:
            phase = "simclr" if epoch < c.warmup_epochs else "dpac"
            self.model_.train()
            order = torch.randperm(len(inputs), generator=generator)
            sums, batches = {"loss": 0.0, "kl": 0.0, "info_nce": 0.0}, 0
            for start in range(0, len(inputs), c.batch_size):
                index = order[start : start + c.batch_size]
                if len(index) < 2:
                    continue
                partner = index
                if neighbours is not None:
                    pick = torch.randint(0, neighbours.shape[1], (len(index),), generator=generator)
                    partner = neighbours[index, pick]
                view = self._view(inputs[index], generator)
                h1, logits1, z1 = self.model_(view)
                _, _, z2 = self.model_(self._view(inputs[partner], generator))
                if phase == "simclr":
                    nce = info_nce(z1, z2, c.temperature)
                    out = {"loss": nce, "kl": torch.tensor(float("nan")), "info_nce": nce}
                else:
                    out = loss_fn(frozen[index] if c.target_features == "frozen" else h1, logits1, z1, z2)
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
            self.labels_ = self.predict(x)
            history.clusters_used.append(int(np.unique(self.labels_).size))
            bar.set_postfix(phase=phase, loss=f"{history.loss[-1]:.3f}", clusters=history.clusters_used[-1])
        return self

    def _view(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        c = self.config
        noisy = x + c.noise * torch.randn(x.shape, generator=generator)
        if c.dropout:
            keep = torch.rand(x.shape, generator=generator) >= c.dropout
            noisy = noisy * keep / (1 - c.dropout)
        return noisy

    @torch.no_grad()
    def transform(self, features: np.ndarray) -> np.ndarray:
        """The trunk's features."""
        return self._forward(features)[0].numpy()

    @torch.no_grad()
    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        return torch.softmax(self._forward(features)[1], dim=1).numpy()

    def predict(self, features: np.ndarray) -> np.ndarray:
        return self.predict_proba(features).argmax(1)

    def _forward(self, features):
        self.model_.eval()
        x = (np.asarray(features, dtype=np.float32) - self.mean_) / self.scale_
        return self.model_(torch.from_numpy(x))


def _nearest_neighbours(x: np.ndarray, k: int) -> torch.Tensor:
    """Each row's ``k`` nearest other rows by cosine distance, (N, k)."""
    from sklearn.neighbors import NearestNeighbors

    k = min(k, len(x) - 1)
    index = NearestNeighbors(n_neighbors=k + 1, metric="cosine").fit(x).kneighbors(x, return_distance=False)
    return torch.from_numpy(index[:, 1:].copy())


KMEANS = ("k-means (n_init=10)", "k-means (n_init=10), standardised", "k-means (n_init=10), L2-normalised")
OFFLINE_PAC = "PAC (cosine, m=1.03)"
BASELINES = (*KMEANS, OFFLINE_PAC)


def compare_on_features(
    features: np.ndarray, labels: np.ndarray, config: FrozenDPACConfig, seeds: list[int], progress: bool = True
) -> tuple[list[dict], dict[int, FrozenHistory]]:
    """DPAC heads and the offline clusterers on the same frozen ``features``, one row per (method, seed) with
    ACC / NMI / ARI in percent; the heads' training histories by seed. k-means runs on the features as given,
    standardised (the heads' input) and L2-normalised (the geometry of the cosine distances the PAC target uses),
    so the strongest of the three can be the baseline; offline PAC (cosine) is the offline counterpart of the
    online target."""
    from sklearn.cluster import KMeans

    from .metrics import scores
    from .pac import PAC

    x = np.asarray(features, dtype=np.float32)
    standardised = (x - x.mean(0)) / (x.std(0) + 1e-6)
    normalised = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    k = config.n_clusters
    rows, histories = [], {}
    for seed in tqdm(seeds, desc="frozen-feature clustering", disable=not progress):
        model = FrozenDPAC(replace(config, seed=seed)).fit(x)
        histories[seed] = model.history_
        predictions = {
            "DPAC head": model.labels_,
            KMEANS[0]: KMeans(k, n_init=10, random_state=seed).fit_predict(x),
            KMEANS[1]: KMeans(k, n_init=10, random_state=seed).fit_predict(standardised),
            KMEANS[2]: KMeans(k, n_init=10, random_state=seed).fit_predict(normalised),
            OFFLINE_PAC: PAC(k, m=1.03, metric="cosine", random_state=seed).fit(x).labels_,
        }
        for method, predicted in predictions.items():
            rows.append({"method": method, "seed": seed, **scores(labels, predicted)})
    return rows, histories


def simclr_digits_features(
    X_digits: np.ndarray, epochs: int, augment_strength: float, seed: int, progress: bool = True
) -> tuple[np.ndarray, nn.Module, object]:
    """Frozen features of the digits: DPAC's small CNN trained by SimCLR alone (InfoNCE on two augmented views,
    no clustering loss) for ``epochs``, then its pooled backbone output; ``(features, model, history)``."""
    from . import dpac

    config = dpac.DPACConfig(
        n_clusters=10, warmup_epochs=epochs, epochs=0, augment_strength=augment_strength, seed=seed
    )
    images = dpac.digits_images(X_digits)
    model, history = dpac.train(images, config, progress=progress)
    return model.embed(images)[0], model, history


def setting_config(setting, n_clusters: int, m: float, temperature: float, batch_size: int, epochs_cap: int = 0):
    """The heads' config for a ``params.yaml`` setting (``pac.frozen.settings[i]``, a mapping or model)."""
    s = setting if isinstance(setting, dict) else setting.model_dump()
    cap = (lambda e: min(e, epochs_cap)) if epochs_cap else (lambda e: e)
    return FrozenDPACConfig(
        n_clusters=n_clusters,
        hidden_dim=s["hidden_dim"],
        views=s["views"],
        noise=s["noise"],
        dropout=s["dropout"],
        n_neighbours=s["n_neighbours"],
        target_features=s["target_features"],
        m=m,
        temperature=temperature,
        warmup_epochs=cap(s["warmup_epochs"]),
        epochs=max(1, cap(s["epochs"])),
        batch_size=batch_size,
        lr=s["lr"],
    )


def summarise(results: pd.DataFrame) -> pd.DataFrame:
    """Per setting (rows of ``results``: setting, method, seed, acc, ...): each method's mean and std ACC over
    seeds; the baseline (the strongest k-means by mean ACC), the head's gain over it in points and the std over
    seeds of the per-seed gain (same seed, paired); the gain over offline PAC."""
    table = results.groupby(["setting", "method"], sort=False).acc.agg(["mean", "std"]).unstack("method")
    out = pd.DataFrame(index=table.index)
    for method in ("DPAC head", *BASELINES):
        out[f"{method} mean"] = table["mean"][method]
        out[f"{method} std"] = table["std"][method]
    kmeans = out[[f"{m} mean" for m in KMEANS]]
    out["baseline"] = kmeans.idxmax(axis=1).str.removesuffix(" mean")
    out["baseline mean"] = kmeans.max(axis=1)
    out["gain"] = out["DPAC head mean"] - out["baseline mean"]
    by_seed = results.pivot_table(index=["setting", "seed"], columns="method", values="acc")
    paired = by_seed["DPAC head"] - by_seed.apply(lambda row: row[out.loc[row.name[0], "baseline"]], axis=1)
    out["gain std"] = paired.groupby(level="setting").std()
    out["gain over offline PAC"] = out["DPAC head mean"] - out[f"{OFFLINE_PAC} mean"]
    out["seeds"] = results.groupby("setting", sort=False).seed.nunique()
    return out
