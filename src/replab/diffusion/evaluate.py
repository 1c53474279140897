"""The evaluation protocol: held-out identities, their references, style images and galleries, and the scores.

Identity is scored by the independent evaluator (never the conditioning encoder) against a gallery of *other*
images of each held-out identity in other styles (never the reference): cosine to the true identity's prototype
and top-1 identification among all held-out identities. Style adherence is the attribute classifier's agreement
with the style image's background, pattern, texture and palette (the factors the face mask leaves visible;
expression is on the masked face and is reported apart).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import linalg

from .encoders import EVALUATOR_CROP, embed, face_crops

STYLE_VISIBLE = (0, 1, 2, 3)  # background, pattern, texture, palette (portraits.STYLE_FACTORS order)
EXPRESSION = 4


@dataclass(frozen=True)
class Protocol:
    """Who goes where: sample i puts held-out identity ``target[i]`` into style image i."""

    ids: torch.Tensor  # global identity id of each held-out index (n_ids,)
    refs: torch.Tensor  # (n_ids, n_refs, 3, H, W) reference images
    ref_boxes: torch.Tensor  # (n_ids, n_refs, 4)
    styles: torch.Tensor  # (n, 3, H, W) style images (unmasked; the generator sees them masked)
    style_boxes: torch.Tensor  # (n, 4)
    style_codes: torch.Tensor  # (n, 5)
    captions: list[str]
    target: torch.Tensor  # (n,) held-out index of the identity to put in
    source: torch.Tensor  # (n,) held-out index of the style image's own (masked) identity
    gallery: torch.Tensor  # (n_ids, d) the evaluator's unit-norm prototypes
    gallery_features: torch.Tensor  # (n_ids * per_gallery, d) raw evaluator features of the gallery faces

    @property
    def n_refs(self) -> int:
        return self.refs.shape[1]


def build_protocol(heldout, evaluator, styles_per_identity: int, references: int) -> Protocol:
    """From the held-out split (images ordered by identity, ``per_id`` each): the first half of each identity's
    images are references (the first ``references`` of them) and style sources, the second half its gallery. The
    style images for identity k come from identities k+1, k+2, ... (their faces masked)."""
    ids, counts = torch.unique(heldout.identity, return_counts=True)
    n_ids, per_id = len(ids), int(counts[0])
    if not (counts == per_id).all() or not torch.equal(heldout.identity, ids.repeat_interleave(per_id)):
        raise ValueError("held-out images must come grouped by identity, the same number each")
    half = per_id // 2
    if half < 2:
        raise ValueError(f"{per_id} images per identity: need >= 4 (references and styles, gallery)")
    if styles_per_identity >= n_ids:
        raise ValueError(f"styles_per_identity ({styles_per_identity}) must be < the held-out identities ({n_ids})")
    index = torch.arange(len(heldout.identity)).view(n_ids, per_id)
    n_refs = min(references, half)
    refs = index[:, :n_refs]
    gallery_index = index[:, half:].reshape(-1)
    features = _features(evaluator, heldout.images[gallery_index], heldout.boxes[gallery_index])
    gallery = F.normalize(F.normalize(features).view(n_ids, per_id - half, -1).mean(1), dim=-1)
    picks, target, source = [], [], []
    for k in range(n_ids):
        for s in range(styles_per_identity):
            j = (k + 1 + s) % n_ids
            # Another identity's image (j != k), so never the target's own reference; not position 0, which is
            # identity j's single reference when j is itself the target.
            picks.append(int(index[j, 1 + s % (half - 1)]))
            target.append(k), source.append(j)
    picks_t = torch.tensor(picks)
    return Protocol(
        ids=ids,
        refs=heldout.images[refs],
        ref_boxes=heldout.boxes[refs],
        styles=heldout.images[picks_t],
        style_boxes=heldout.boxes[picks_t],
        style_codes=heldout.style[picks_t],
        captions=[heldout.captions[i] for i in picks],
        target=torch.tensor(target),
        source=torch.tensor(source),
        gallery=gallery,
        gallery_features=features,
    )


@torch.no_grad()
def _features(evaluator, images: torch.Tensor, boxes: torch.Tensor, chunk: int = 512) -> torch.Tensor:
    crops = [
        evaluator(face_crops(images[i : i + chunk], boxes[i : i + chunk], EVALUATOR_CROP.size, EVALUATOR_CROP.margin))
        for i in range(0, len(images), chunk)
    ]
    return torch.cat(crops)


def identity_scores(
    evaluator, gallery: torch.Tensor, images: torch.Tensor, boxes: torch.Tensor, target: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Per sample: cosine to the target's prototype, top-1 correctness among every held-out identity, and the
    predicted identity."""
    e = embed(evaluator, images, boxes, EVALUATOR_CROP)
    cos = e @ gallery.T
    pred = cos.argmax(1)
    return {"cos": cos[torch.arange(len(e)), target], "correct": pred == target, "pred": pred}


def style_scores(attributes, images: torch.Tensor, codes: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per sample: share of the visible style factors the attribute classifier reads as the style image's, and
    whether the expression matches."""
    match = attributes.predict(images) == codes
    return {"style": match[:, list(STYLE_VISIBLE)].float().mean(1), "expression": match[:, EXPRESSION].float()}


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (FID's formula, in the evaluator's space)."""
    a, b = a.double().numpy(), b.double().numpy()
    mu = a.mean(0) - b.mean(0)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root, _ = linalg.sqrtm(ca @ cb, disp=False)
    return float(mu @ mu + np.trace(ca + cb - 2 * np.real(root)))


def paste_faces(
    styles: torch.Tensor, style_boxes: torch.Tensor, refs: torch.Tensor, ref_boxes: torch.Tensor
) -> torch.Tensor:
    """The copy-paste control: each reference's face, scaled from its box onto the style image's face box and
    blended in inside the ellipse inscribed in that box."""
    n, _, h, w = styles.shape
    sb, rb = style_boxes.float(), ref_boxes.float()
    s_c, r_c = (sb[:, :2] + sb[:, 2:]) / 2, (rb[:, :2] + rb[:, 2:]) / 2
    ratio = (rb[:, 2:] - rb[:, :2]) / (sb[:, 2:] - sb[:, :2])
    size = torch.tensor([w, h], dtype=torch.float32)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = ratio[:, 0], ratio[:, 1]
    # normalised coords: u = 2 x / W - 1; the style centre maps to the reference centre
    theta[:, :, 2] = (2 * r_c / size - 1) - ratio * (2 * s_c / size - 1)
    grid = F.affine_grid(theta, (n, 3, h, w), align_corners=False)
    warped = F.grid_sample(refs, grid, mode="bilinear", padding_mode="border", align_corners=False)
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    half = (sb[:, 2:] - sb[:, :2]) / 2
    inside = ((xs - s_c[:, 0, None, None]) / half[:, 0, None, None]) ** 2 + (
        (ys - s_c[:, 1, None, None]) / half[:, 1, None, None]
    ) ** 2 <= 1
    return torch.where(inside[:, None], warped, styles)


def boxes_of(masks: torch.Tensor) -> torch.Tensor:
    """Boxes (x0, y0, x1, y1) of binary masks (..., H, W); an empty mask gives a zero box."""
    flat = masks.reshape(-1, *masks.shape[-2:]).bool()
    out = torch.zeros(len(flat), 4)
    for i, m in enumerate(flat):
        ys, xs = torch.nonzero(m, as_tuple=True)
        if len(xs):
            out[i] = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)
    return out.view(*masks.shape[:-2], 4)


def region_map(boxes: torch.Tensor, size: int, grow: float = 1.3) -> torch.Tensor:
    """(n, size, size) int: 0 outside every person, i+1 inside a square ``grow`` times person i's box (the
    masked attention's regions; later people overwrite earlier ones where squares meet)."""
    n, people, _ = boxes.shape
    out = torch.zeros(n, size, size, dtype=torch.long)
    ys, xs = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    for p in range(people):
        b = boxes[:, p]
        c = (b[:, :2] + b[:, 2:]) / 2
        half = torch.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) * grow / 2
        inside = ((xs - c[:, 0, None, None]).abs() <= half[:, None, None]) & (
            (ys - c[:, 1, None, None]).abs() <= half[:, None, None]
        )
        out[inside] = p + 1
    return out


def wilson_interval(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion (stays inside [0, 1], unlike a t-interval of a few seeds)."""
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * np.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


def identity_bootstrap_interval(
    correct: torch.Tensor, target: torch.Tensor, resamples: int = 2000
) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of top-1 that resamples identities (each with all its samples), so it
    covers which identities were drawn as well as the sampling noise; ``correct`` and ``target`` are per sample."""
    per_identity = np.array([float(correct[target == k].float().mean()) for k in torch.unique(target).tolist()])
    return paired_identity_bootstrap(per_identity, np.zeros_like(per_identity), resamples)


def paired_identity_bootstrap(a: np.ndarray, b: np.ndarray, resamples: int = 2000) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of mean(a - b), resampling identities: ``a`` and ``b`` hold two arms'
    per-identity scores on the same identities (``b`` zero for one arm's own interval). Where every difference is
    the same there is nothing to resample and the interval is that value."""
    from scipy import stats

    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if np.ptp(diff) == 0:
        return float(diff[0]), float(diff[0])
    res = stats.bootstrap((diff,), np.mean, n_resamples=resamples, method="percentile", random_state=0)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def mean_and_interval(per_seed: list[float]) -> tuple[float, float, float]:
    """Mean over sampling seeds with a 95 % t-interval (the mean itself twice when there is one seed)."""
    from scipy import stats

    values = np.asarray(per_seed, dtype=float)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, mean, mean
    half = float(stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))
    return mean, mean - half, mean + half
