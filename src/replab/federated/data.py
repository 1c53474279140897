"""The federated task: WordNet noun gloss -> supersense, balanced over the N largest supersenses, split into
train / validation / test, with the training set divided among clients by a Dirichlet partition over labels
(flwr-datasets' ``DirichletPartitioner`` on a local ``datasets.Dataset``: nothing is downloaded)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Split:
    text: list[str]
    label: np.ndarray  # int64 class ids


@dataclass(frozen=True)
class GlossTask:
    classes: list[str]  # supersense names, by class id
    train: Split
    validation: Split
    test: Split


def _take(texts: list[str], labels: np.ndarray, idx: np.ndarray) -> Split:
    return Split([texts[i] for i in idx], labels[idx])


def gloss_task(
    root: Path = Path("data"), n_classes: int = 8, per_class: int = 300, fractions=(0.7, 0.15, 0.15), seed: int = 0
) -> GlossTask:
    """``per_class`` glosses from each of the ``n_classes`` largest supersenses (balanced), split stratified by
    ``fractions`` (train, validation, test)."""
    from sklearn.model_selection import train_test_split

    if n_classes < 2:
        raise ValueError(f"n_classes must be at least 2, got {n_classes}")
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"fractions (train, validation, test) must be positive and sum to 1, got {fractions}")
    path = Path(root) / "wordnet" / "noun_glosses.tsv"
    with open(path, newline="", encoding="utf-8") as f:
        rows = [(r["gloss"], r["supersense"]) for r in csv.DictReader(f, delimiter="\t")]
    names, counts = np.unique([s for _, s in rows], return_counts=True)
    if n_classes > len(names):
        raise ValueError(f"n_classes ({n_classes}) exceeds the {len(names)} noun supersenses")
    order = np.lexsort((names, -counts))  # largest first, ties by name
    classes = [str(names[i]) for i in order[:n_classes]]
    smallest = int(counts[order[n_classes - 1]])
    if per_class > smallest:
        raise ValueError(f"per_class ({per_class}) exceeds the smallest chosen supersense ({smallest} glosses)")
    rng = np.random.default_rng(seed)
    texts: list[str] = []
    labels: list[int] = []
    for k, name in enumerate(classes):
        pool = [g for g, s in rows if s == name]
        for i in rng.choice(len(pool), size=per_class, replace=False):
            texts.append(pool[i])
            labels.append(k)
    y = np.asarray(labels, dtype=np.int64)
    idx = np.arange(len(y))
    train, rest = train_test_split(idx, train_size=fractions[0], stratify=y, random_state=seed)
    val_share = fractions[1] / (fractions[1] + fractions[2])
    val, test = train_test_split(rest, train_size=val_share, stratify=y[rest], random_state=seed)
    return GlossTask(classes, _take(texts, y, train), _take(texts, y, val), _take(texts, y, test))


def dirichlet_partitions(
    labels: np.ndarray, n_clients: int, alpha: float, seed: int = 0, min_partition_size: int = 2
) -> list[np.ndarray]:
    """Indices of ``labels`` for each client: per class, shares drawn from Dirichlet(``alpha``) (small alpha:
    each client sees few classes). Every index goes to exactly one client."""
    from datasets import Dataset
    from flwr_datasets.partitioner import DirichletPartitioner

    labels = np.asarray(labels)
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0 (smaller is more non-IID), got {alpha}")
    if n_clients < 1:
        raise ValueError(f"n_clients must be at least 1, got {n_clients}")
    if n_clients * min_partition_size > len(labels):
        raise ValueError(
            f"{n_clients} clients with at least {min_partition_size} samples each need "
            f"{n_clients * min_partition_size} samples; the training set has {len(labels)}"
        )
    dataset = Dataset.from_dict({"idx": np.arange(len(labels)), "label": labels.astype(np.int64)})
    partitioner = DirichletPartitioner(
        num_partitions=n_clients,
        partition_by="label",
        alpha=float(alpha),
        min_partition_size=min_partition_size,
        self_balancing=False,
        seed=seed,
    )
    partitioner.dataset = dataset
    return [np.asarray(partitioner.load_partition(i)["idx"], dtype=np.int64) for i in range(n_clients)]
