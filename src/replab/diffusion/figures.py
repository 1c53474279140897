"""The notebook's figures and tables of a :class:`~replab.diffusion.experiment.Study`."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from .experiment import Study
from .headline import PAPER_COS
from .training import mask_faces


def _rgb(image: torch.Tensor) -> np.ndarray:
    return ((image.permute(1, 2, 0).numpy() + 1) / 2).clip(0, 1)


def losses(curves: dict[str, list[float]], smooth: int = 25):
    """Each trained part's loss per step (a running mean over ``smooth`` steps)."""
    fig, axes = plt.subplots(1, len(curves), figsize=(2.6 * len(curves), 2.6))
    for ax, (name, values) in zip(np.atleast_1d(axes), curves.items()):
        v = np.asarray(values, dtype=float)
        k = max(1, min(smooth, len(v) // 5))
        ax.plot(np.convolve(v, np.ones(k) / k, mode="valid"), lw=1)
        ax.set(title=name.replace("_", " "), xlabel="step")
    fig.tight_layout()
    return fig


def arm_table(study: Study) -> pd.DataFrame:
    rows = []
    for key, arm in study.arms.items():
        _, _, lo, hi = arm.top1_interval()
        id_lo, id_hi = arm.top1_identity_interval()
        rows.append(
            {
                "arm": arm.name,
                "refs": arm.refs,
                "identities": arm.identities,
                "top-1": arm.mean("top1")[0],
                "top-1 95% Wilson (samples)": f"{lo:.3f}–{hi:.3f}",
                "top-1 95% bootstrap (identities)": f"{id_lo:.3f}–{id_hi:.3f}",
                "cos": arm.mean("cos")[0],
                "paper cos (Sec. 4.2)": PAPER_COS[key].value if key in PAPER_COS else None,
                "style": arm.mean("style")[0],
                "expression": arm.mean("expression")[0],
                "top-1 style source": arm.mean("top1_style_source")[0],
                "tuning s / identity": arm.tuning_s,
                "inference s / sample": arm.inference.median if arm.inference else None,
            }
        )
    return pd.DataFrame(rows).set_index("arm").round(3)


def _show(ax, image: torch.Tensor, title: str = "") -> None:
    ax.imshow(_rgb(image), interpolation="nearest")
    ax.set_xticks([]), ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def sample_grid(study: Study, arms: tuple[str, ...] = ()):
    """Rows: held-out identities; columns: the reference, the style image as the generator sees it (face masked),
    then each arm's sample (first sampling seed)."""
    p = study.protocol
    arms = arms or tuple(k for k, a in study.arms.items() if a.grid is not None)
    step = len(p.target) // len(p.ids)
    rows = min(len(a.grid) for a in (study.arms[k] for k in arms))
    masked = mask_faces(p.styles[::step][:rows], p.style_boxes[::step][:rows])
    fig, axes = plt.subplots(rows, 2 + len(arms), figsize=(1.15 * (2 + len(arms)), 1.25 * rows), squeeze=False)
    for r in range(rows):
        _show(axes[r, 0], p.refs[r, 0], "reference" if r == 0 else "")
        _show(axes[r, 1], masked[r], "style (masked)" if r == 0 else "")
        for c, key in enumerate(arms):
            _show(axes[r, 2 + c], study.arms[key].grid[r], study.arms[key].name if r == 0 else "")
    fig.tight_layout()
    return fig


def scene_grid(study: Study):
    sc = study.scenes
    if not sc:
        fig = plt.figure(figsize=(3, 1))
        fig.text(0.5, 0.5, "no held-out scenes in this profile", ha="center")
        return fig
    cols = [("scene", sc["style"]["grid"]), ("style (masked)", sc["style"]["masked"])]
    cols += [("masked attention", sc["masked"]["grid"]), ("ordinary attention", sc["vanilla"]["grid"])]
    rows = min(len(c[1]) for c in cols)
    fig, axes = plt.subplots(rows, len(cols), figsize=(1.6 * len(cols), 1.6 * rows), squeeze=False)
    for r in range(rows):
        for c, (title, images) in enumerate(cols):
            _show(axes[r, c], images[r], title if r == 0 else "")
    fig.tight_layout()
    return fig


def sweeps(alpha: pd.DataFrame, beta: pd.DataFrame):
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.4))
    ax[0].plot(alpha.alpha, alpha.top1, "o-", label="top-1 (identity)")
    ax[0].plot(alpha.alpha, alpha["style"], "s-", label="style adherence")
    ax[0].set(xlabel="alpha (0 text branch, 1 image branch)", ylim=(0, 1), title="hybrid guidance")
    ax[0].legend()
    ax[1].plot(beta.beta, beta.cos_a, "o-", label="cosine to A")
    ax[1].plot(beta.beta, beta.cos_b, "s-", label="cosine to B")
    ax[1].plot(beta.beta, beta.closer_to_a, "^--", label="share closer to A")
    ax[1].set(xlabel="beta (weight of identity A)", title="identity blending")
    ax[1].legend()
    fig.tight_layout()
    return fig
