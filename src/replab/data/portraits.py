"""Procedural portraits for the FaceStudio experiment: identities that persist across styles, one set per profile.

Each identity is a fixed draw of face factors (face shape, eye spacing, size and colour, nose, mouth, skin tone);
each image of it a fresh draw of style factors (background colour and pattern, texture, palette photo / sketch /
posterised, a small pose shift and scale, expression). Images are rendered at 4x and box-filtered down, so edges
are anti-aliased. Every image comes with its face box and mask and a caption made from its style factors; scenes
put two identities side by side with an instance mask each. Identities 0..n_train-1 train; the rest are held out
(they never appear in a training image or scene). Every draw is seeded by (profile seed, identity, image), so a
profile's content does not depend on the order or number of anything else.

The generation parameters are fixed here (not in params.yaml) because ``data/`` is a versioned input.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .arrays import load_array, save_array, save_json

PROFILES = {
    "tiny": {"size": 32, "train_ids": 24, "heldout_ids": 6, "per_id": 4, "train_scenes": 16, "heldout_scenes": 8},
    "laptop": {"size": 32, "train_ids": 500, "heldout_ids": 50, "per_id": 8, "train_scenes": 0, "heldout_scenes": 200},
    "paper": {"size": 64, "train_ids": 500, "heldout_ids": 50, "per_id": 8, "train_scenes": 0, "heldout_scenes": 200},
}
SEED = 2312  # arXiv 2312.02663
SUPERSAMPLE = 4

# Identity factors (columns of identities.npy), each drawn uniformly in its range.
IDENTITY_FACTORS = {
    "face_width": (0.40, 0.56),
    "face_aspect": (1.10, 1.45),  # height / width
    "face_squareness": (1.7, 3.2),  # superellipse exponent: pointed chin .. square jaw
    "skin_tone": (0.0, 1.0),  # light .. dark
    "eye_spacing": (0.30, 0.50),  # between the eye centres, in face widths
    "eye_size": (0.07, 0.13),
    "eye_height": (-0.28, -0.08),  # above the face centre, in face heights
    "eye_hue": (0.0, 1.0),  # index into EYE_COLOURS, continuous
    "nose_length": (0.10, 0.26),
    "nose_width": (0.04, 0.10),
    "mouth_width": (0.16, 0.36),
    "mouth_height": (0.24, 0.40),  # below the face centre, in face heights
    "lip_redness": (0.0, 1.0),
}
EYE_COLOURS = np.array([[0.20, 0.45, 0.85], [0.25, 0.60, 0.30], [0.40, 0.25, 0.10], [0.55, 0.55, 0.60]])
SKIN_LIGHT, SKIN_DARK = np.array([0.97, 0.82, 0.70]), np.array([0.33, 0.20, 0.12])

# Style factors (categorical; the caption names them).
BACKGROUND_COLOURS = {
    "red": (0.80, 0.20, 0.20),
    "orange": (0.95, 0.55, 0.15),
    "yellow": (0.95, 0.85, 0.25),
    "green": (0.25, 0.65, 0.30),
    "teal": (0.15, 0.60, 0.60),
    "blue": (0.20, 0.35, 0.85),
    "purple": (0.55, 0.25, 0.70),
    "grey": (0.55, 0.55, 0.55),
}
PATTERNS = ("plain", "gradient", "striped", "dotted")
TEXTURES = ("smooth", "grainy", "blotchy")
PALETTES = ("photo", "sketch", "posterised")
EXPRESSIONS = ("neutral", "smiling", "open-mouthed", "frowning")
STYLE_FACTORS = {
    "background": tuple(BACKGROUND_COLOURS),
    "pattern": PATTERNS,
    "texture": TEXTURES,
    "palette": PALETTES,
    "expression": EXPRESSIONS,
}


def caption(style: dict) -> str:
    return (
        f"a {style['palette']} portrait of a {style['expression']} face on a {style['background']} "
        f"{style['pattern']} background, {style['texture']} texture"
    )


def draw_identity(seed: int, identity: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 0, identity])
    return np.array([rng.uniform(lo, hi) for lo, hi in IDENTITY_FACTORS.values()], dtype=np.float32)


def draw_style(rng: np.random.Generator) -> dict:
    style = {name: values[int(rng.integers(len(values)))] for name, values in STYLE_FACTORS.items()}
    style.update(dx=float(rng.uniform(-0.08, 0.08)), dy=float(rng.uniform(-0.06, 0.06)))
    style.update(scale=float(rng.uniform(0.94, 1.06)), noise_seed=int(rng.integers(2**31)))
    return style


def _grid(size: int):
    n = size * SUPERSAMPLE
    c = (np.arange(n) + 0.5) / n * 2 - 1
    return np.meshgrid(c, c, indexing="xy")  # x right, y down, in [-1, 1]


def _downsample(a: np.ndarray, size: int) -> np.ndarray:
    s = SUPERSAMPLE
    return a.reshape(size, s, size, s, *a.shape[2:]).mean(axis=(1, 3))


def _face(canvas, x, y, f: dict, style: dict, centre, scale) -> np.ndarray:
    """Paint one face onto ``canvas`` (H, W, 3) in place; returns its mask (H, W) at this resolution."""
    cx, cy = centre
    w = f["face_width"] * scale
    h = w * f["face_aspect"]
    # Work in the face's bounding window only (views: painting them paints the canvas).
    n = x.shape[1]
    cols = slice(*np.clip(np.searchsorted(x[0], [cx - w, cx + w]) + [0, 1], 0, n))
    rows = slice(*np.clip(np.searchsorted(y[:, 0], [cy - h, cy + h]) + [0, 1], 0, n))
    full = np.zeros(x.shape, dtype=bool)
    full[rows, cols] = _paint_face(canvas[rows, cols], x[rows, cols], y[rows, cols], f, style, (cx, cy), w, h)
    return full


def _paint_face(canvas, x, y, f: dict, style: dict, centre, w, h) -> np.ndarray:
    cx, cy = centre
    u, v = (x - cx) / w, (y - cy) / h
    p = f["face_squareness"]
    face = np.abs(u) ** p + np.abs(v) ** p <= 1.0
    skin = SKIN_LIGHT + f["skin_tone"] * (SKIN_DARK - SKIN_LIGHT)
    canvas[face] = skin * (1.0 - 0.15 * np.clip(v[face], 0, 1))[:, None]  # a little shading towards the chin
    # Eyes: sclera ellipses with an iris in the identity's colour.
    hue = f["eye_hue"] * (len(EYE_COLOURS) - 1)
    lo = int(np.floor(hue))
    iris = EYE_COLOURS[lo] + (hue - lo) * (EYE_COLOURS[min(lo + 1, len(EYE_COLOURS) - 1)] - EYE_COLOURS[lo])
    ey, r = cy + f["eye_height"] * h, f["eye_size"] * w
    for side in (-1, 1):
        ex = cx + side * f["eye_spacing"] * w
        sclera = ((x - ex) / (1.5 * r)) ** 2 + ((y - ey) / r) ** 2 <= 1
        canvas[sclera & face] = (0.97, 0.97, 0.95)
        canvas[((x - ex) ** 2 + (y - ey) ** 2 <= (0.75 * r) ** 2) & face] = iris
        canvas[((x - ex) ** 2 + (y - ey) ** 2 <= (0.3 * r) ** 2) & face] = (0.05, 0.05, 0.05)
        brow_y = ey - 1.7 * r - (0.5 * r if style["expression"] == "open-mouthed" else 0.0)
        tilt = {"frowning": 0.6, "smiling": -0.2}.get(style["expression"], 0.0) * side * (x - ex) / w
        brow = (np.abs(x - ex) <= 1.6 * r) & (np.abs(y - brow_y - tilt * r * 2) <= 0.28 * r)
        canvas[brow & face] = skin * 0.35
    # Nose: a darker wedge, widening downwards.
    top, length = cy + f["eye_height"] * h * 0.3, f["nose_length"] * h
    along = (y - top) / length
    nose = (along >= 0) & (along <= 1) & (np.abs(x - cx) <= f["nose_width"] * w * (0.4 + 0.6 * along))
    canvas[nose & face] = skin * 0.78
    # Mouth: an arc whose curvature is the expression; open: a dark ellipse.
    my, mw = cy + f["mouth_height"] * h, f["mouth_width"] * w / 2
    lips = np.array([0.75, 0.25, 0.25]) * f["lip_redness"] + skin * 0.55 * (1 - f["lip_redness"])
    if style["expression"] == "open-mouthed":
        mouth = ((x - cx) / mw) ** 2 + ((y - my) / (0.45 * mw)) ** 2 <= 1
        canvas[mouth & face] = (0.25, 0.05, 0.05)
        ring = mouth & ~(((x - cx) / (0.8 * mw)) ** 2 + ((y - my) / (0.3 * mw)) ** 2 <= 1)
        canvas[ring & face] = lips
    else:
        bend = {"neutral": 0.0, "smiling": 0.5, "frowning": -0.4}[style["expression"]] * mw
        arc = my - bend * (1 - ((x - cx) / mw) ** 2)
        mouth = (np.abs(x - cx) <= mw) & (np.abs(y - arc) <= 0.2 * mw + 0.03 * w)
        canvas[mouth & face] = lips
    return face


def _background(x, y, style: dict, rng: np.random.Generator) -> np.ndarray:
    colour = np.array(BACKGROUND_COLOURS[style["background"]])
    pale = 0.55 * colour + 0.45
    pattern = style["pattern"]
    if pattern == "gradient":
        t = (y + 1) / 2
        img = pale * (1 - t[..., None]) + colour * t[..., None]
    elif pattern == "striped":
        img = np.where((np.sin((x + y) * 9.0) > 0)[..., None], colour, pale)
    elif pattern == "dotted":
        dots = (np.sin(x * 14.0) * np.sin(y * 14.0)) > 0.55
        img = np.where(dots[..., None], pale, colour)
    else:
        img = np.broadcast_to(colour, (*x.shape, 3)).copy()
    return img.astype(np.float64)


def _texture(img: np.ndarray, style: dict, rng: np.random.Generator, size: int) -> np.ndarray:
    if style["texture"] == "grainy":
        img = img + rng.normal(0, 0.06, img.shape[:2])[..., None]
    elif style["texture"] == "blotchy":
        from scipy.ndimage import zoom

        coarse = rng.normal(0, 0.06, (size // 4 + 1, size // 4 + 1))
        blotch = zoom(coarse, img.shape[0] / coarse.shape[0], order=1)[: img.shape[0], : img.shape[1]]
        img = img + blotch[..., None]
    return np.clip(img, 0, 1)


def _palette(img: np.ndarray, palette: str) -> np.ndarray:
    if palette == "posterised":
        return np.round(img * 4) / 4  # 5 levels per channel: flat regions, colours kept
    if palette == "sketch":
        grey = img @ np.array([0.3, 0.59, 0.11])
        gy, gx = np.gradient(grey)
        edges = np.clip(1 - 6 * np.hypot(gx, gy), 0, 1)
        paper = 0.75 + 0.25 * grey
        return np.repeat((edges * paper)[..., None], 3, axis=2) * np.array([1.0, 0.97, 0.9])
    return img


def render(faces: list[tuple[np.ndarray, tuple[float, float], float]], style: dict, size: int):
    """One image (size, size, 3) uint8 with each face's coverage (n_faces, size, size) in [0, 1]: ``faces`` is a
    list of (identity factors, centre in [-1, 1]^2, scale)."""
    x, y = _grid(size)
    rng = np.random.default_rng(style["noise_seed"])
    canvas = _background(x, y, style, rng)
    masks = []
    for factors, centre, scale in faces:
        named = dict(zip(IDENTITY_FACTORS, factors.tolist(), strict=True))
        masks.append(_face(canvas, x, y, named, style, centre, scale))
    canvas = _palette(_texture(canvas, style, rng, size), style["palette"])
    image = np.clip(np.round(_downsample(canvas, size) * 255), 0, 255).astype(np.uint8)
    coverage = np.stack([_downsample(m.astype(np.float64), size) for m in masks])
    return image, coverage


def _box(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def _single(seed: int, identity: int, index: int, factors: np.ndarray, size: int):
    style = draw_style(np.random.default_rng([seed, 1, identity, index]))
    image, coverage = render([(factors, (style["dx"], 0.05 + style["dy"]), style["scale"])], style, size)
    return image, coverage[0] >= 0.5, style


def _scene(seed: int, index: int, pair: tuple[int, int], identities: np.ndarray, size: int):
    style = draw_style(np.random.default_rng([seed, 2, index]))
    faces = [
        (identities[i], (side * 0.5 + style["dx"] * 0.5, 0.1 + style["dy"]), 0.55) for i, side in zip(pair, (-1, 1))
    ]
    image, coverage = render(faces, style, size)
    masks = coverage >= 0.5
    masks[0] &= ~masks[1]  # instance masks do not overlap
    return image, masks, style


def build_profile(folder: Path, profile: str) -> None:
    meta = PROFILES[profile]
    size, n_train, n_all = meta["size"], meta["train_ids"], meta["train_ids"] + meta["heldout_ids"]
    identities = np.stack([draw_identity(SEED, i) for i in range(n_all)])
    folder.mkdir(parents=True)
    save_array(folder / "identities.npy", identities)
    for split, ids in (("train", range(n_train)), ("heldout", range(n_train, n_all))):
        images, masks, styles, owner = [], [], [], []
        for i in ids:
            for j in range(meta["per_id"]):
                image, mask, style = _single(SEED, i, j, identities[i], size)
                images.append(image), masks.append(mask), styles.append(style), owner.append(i)
        _save_split(folder / split, images, masks, styles, np.array(owner, dtype=np.int32))
    rng = np.random.default_rng([SEED, 3])
    for split, lo, hi, n in (
        ("train", 0, n_train, meta["train_scenes"]),
        ("heldout", n_train, n_all, meta["heldout_scenes"]),
    ):
        if n == 0:
            continue
        pairs = [tuple(int(v) for v in rng.choice(np.arange(lo, hi), 2, replace=False)) for _ in range(n)]
        offset = 0 if split == "train" else 1_000_000  # scene seeds distinct between splits
        scenes = [_scene(SEED, offset + k, pair, identities, size) for k, pair in enumerate(pairs)]
        _save_split(
            folder / f"{split}_scenes",
            [s[0] for s in scenes],
            [s[1] for s in scenes],
            [s[2] for s in scenes],
            np.array(pairs, dtype=np.int32),
        )
    save_json(
        folder / "meta.json",
        {
            **meta,
            "seed": SEED,
            "identity_factors": list(IDENTITY_FACTORS),
            "style_factors": {k: list(v) for k, v in STYLE_FACTORS.items()},
            "train_identities": [0, n_train],
            "heldout_identities": [n_train, n_all],
        },
    )


def _save_split(folder: Path, images, masks, styles, owner: np.ndarray) -> None:
    folder.mkdir()
    save_array(folder / "images.npy", np.stack(images))
    save_array(folder / "masks.npy", np.stack(masks).astype(np.uint8))
    save_array(folder / "identity.npy", owner)
    if np.stack(masks).ndim == 3:  # single faces: their boxes
        save_array(folder / "boxes.npy", np.array([_box(m) for m in masks], dtype=np.int16))
    codes = np.array([[values.index(s[name]) for name, values in STYLE_FACTORS.items()] for s in styles])
    save_array(folder / "style.npy", codes.astype(np.int8))
    save_json(folder / "captions.json", [caption(s) for s in styles])


def build(out: Path) -> None:
    for profile in PROFILES:
        build_profile(out / profile, profile)


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # (n, size, size, 3) uint8
    masks: np.ndarray  # (n, size, size) face masks, or (n, 2, size, size) instance masks of scenes; uint8
    identity: np.ndarray  # (n,) identity per image, or (n, 2) per scene (left, right)
    style: np.ndarray  # (n, len(STYLE_FACTORS)) category codes
    captions: list[str]
    boxes: np.ndarray | None  # (n, 4) x0, y0, x1, y1 of single faces


@dataclass(frozen=True)
class Portraits:
    meta: dict
    identities: np.ndarray  # (n_identities, len(IDENTITY_FACTORS)) factors
    splits: dict[str, Split]  # train, heldout, and *_scenes where the profile has them


def load(data_dir: Path, profile: str) -> Portraits:
    folder = Path(data_dir) / "portraits" / profile
    if not folder.exists():
        raise FileNotFoundError(f"{folder} missing: run `replab data build` (or `make data`)")
    splits = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        boxes = sub / "boxes.npy"
        splits[sub.name] = Split(
            images=load_array(sub / "images.npy"),
            masks=load_array(sub / "masks.npy"),
            identity=load_array(sub / "identity.npy"),
            style=load_array(sub / "style.npy"),
            captions=json.loads((sub / "captions.json").read_text()),
            boxes=load_array(boxes) if boxes.exists() else None,
        )
    meta = json.loads((folder / "meta.json").read_text())
    return Portraits(meta, load_array(folder / "identities.npy"), splits)
