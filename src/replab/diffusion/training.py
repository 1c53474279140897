"""FaceStudio's training stages on the portraits: the frozen encoders first (identity CNN, evaluator, tiny CLIP,
prior, the attribute classifier the evaluation uses), then the generator on reconstruction with face-masked style
input, resumable from checkpoints."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from ..data import portraits
from .checkpoints import Checkpoints, run_key
from .clip import CaptionTokenizer, ClipConfig, EmbeddingPrior, TinyClip, encode_images, encode_text, train_clip
from .clip import train_prior as fit_prior
from .encoders import (
    CONDITIONING_CROP,
    EVALUATOR_CROP,
    ArcMarginHead,
    EvaluatorCNN,
    IdentityCNN,
    NormSoftmaxHead,
    embed,
    to_tensor,
    train_encoder,
)
from .fit import fit
from .generator import TINY, Generator, GeneratorConfig, drop_conditions, image_conditioning, training_loss
from .stable_diffusion import ArcFaceOnnx, ClipEncoder, StableDiffusionConfig

# "sd15": Stable Diffusion 1.5 from idsynth.model_cache (the paper profile); the others are built from scratch.
GENERATORS = {"tiny": TINY, "laptop": GeneratorConfig(), "sd15": StableDiffusionConfig()}
# Offsets from the run's seed: each part trains from its own stream, the evaluator apart from the encoder.
SEEDS = {"identity": 0, "evaluator": 1, "clip": 2, "prior": 3, "attributes": 4, "generator": 5, "ip": 6, "tune": 7}


@dataclass(frozen=True)
class PortraitTensors:
    """One split as tensors: images in [-1, 1], face boxes, global identity ids, style codes, captions."""

    images: torch.Tensor
    boxes: torch.Tensor
    identity: torch.Tensor
    style: torch.Tensor
    captions: list[str]

    @classmethod
    def of(cls, split: portraits.Split) -> PortraitTensors:
        return cls(
            to_tensor(split.images),
            torch.from_numpy(split.boxes.astype(np.float32)),
            torch.from_numpy(split.identity.astype(np.int64)),
            torch.from_numpy(split.style.astype(np.int64)),
            list(split.captions),
        )


def mask_faces(images: torch.Tensor, boxes: torch.Tensor, grow: int = 1) -> torch.Tensor:
    """The style input: each image with its face's box, ``grow`` pixels wider on every side, set to 0 (mid-grey),
    as the paper masks the face out of the style image. The box's place and size stay visible (where the face
    goes); what is inside it does not."""
    out = images.clone()
    h, w = images.shape[-2:]
    b = boxes.round().long()
    for i in range(len(images)):
        x0, y0 = max(0, int(b[i, 0]) - grow), max(0, int(b[i, 1]) - grow)
        x1, y1 = min(w, int(b[i, 2]) + grow), min(h, int(b[i, 3]) + grow)
        out[i, :, y0:y1, x0:x1] = 0
    return out


class AttributeClassifier(nn.Module):
    """Predicts each style factor (background, pattern, texture, palette, expression) from a whole image; trained
    on the training images, used only to score style adherence."""

    def __init__(self, classes: list[int], width: int = 32):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(width, width * 2, 3, stride=2, padding=1),
            nn.SiLU(),
            nn.Conv2d(width * 2, width * 2, 3, stride=2, padding=1),
            nn.SiLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
        )
        self.heads = nn.ModuleList(nn.Linear(width * 8, c) for c in classes)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = self.features(images)
        return [head(x) for head in self.heads]

    @torch.no_grad()
    def predict(self, images: torch.Tensor, chunk: int = 512) -> torch.Tensor:
        rows = [
            torch.stack([o.argmax(1) for o in self(images[i : i + chunk])], 1) for i in range(0, len(images), chunk)
        ]
        return torch.cat(rows)


@dataclass
class Encoders:
    identity: IdentityCNN
    evaluator: EvaluatorCNN
    clip: TinyClip
    prior: EmbeddingPrior
    attributes: AttributeClassifier
    losses: dict[str, list[float]] = field(default_factory=dict)

    def modules(self) -> dict[str, nn.Module]:
        return {
            "identity": self.identity,
            "evaluator": self.evaluator,
            "clip": self.clip,
            "prior": self.prior,
            "attributes": self.attributes,
        }

    def encode_style(self, masked: torch.Tensor) -> torch.Tensor:
        """e_h of images whose faces are already masked."""
        return encode_images(self.clip, masked)

    def style_embeddings(self, images: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """e_h: CLIP image embeddings of the face-masked images."""
        return self.encode_style(mask_faces(images, boxes))

    def identity_embeddings(self, images: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """e_f: the conditioning encoder's embeddings of the face crops."""
        return embed(self.identity, images, boxes, CONDITIONING_CROP)

    def text_embeddings(self, captions: list[str]) -> torch.Tensor:
        """e_T: the prior's image embedding from each caption's CLIP text embedding."""
        with torch.no_grad():
            return self.prior(encode_text(self.clip, captions))


def train_encoders(train: PortraitTensors, s, seed: int) -> Encoders:
    """Every frozen part, on the training identities only. ``s``: the profile's :class:`IdsynthScale`."""
    n_classes = int(train.identity.max()) + 1
    losses = {}
    identity = IdentityCNN(dim=GENERATORS[s.generator].face_dim)
    losses["identity"] = train_encoder(
        identity,
        ArcMarginHead(identity.embed.out_features, n_classes),
        train.images,
        train.boxes,
        train.identity,
        CONDITIONING_CROP,
        steps=s.identity_steps,
        batch=s.encoder_batch,
        lr=2e-3,
        seed=seed + SEEDS["identity"],
        desc="identity encoder (ArcFace loss)",
    )
    masked = mask_faces(train.images, train.boxes)
    tokenizer = CaptionTokenizer(train.captions)
    clip = TinyClip(tokenizer, ClipConfig(image_size=train.images.shape[-1], dim=GENERATORS[s.generator].clip_dim))
    losses["clip"] = train_clip(
        clip, masked, train.captions, steps=s.clip_steps, batch=s.encoder_batch, lr=1e-3, seed=seed + SEEDS["clip"]
    )
    prior = EmbeddingPrior(clip.config.dim)
    losses["prior"] = fit_prior(
        prior,
        encode_text(clip, train.captions),
        encode_images(clip, masked),
        steps=s.prior_steps,
        batch=s.encoder_batch,
        lr=1e-3,
        seed=seed + SEEDS["prior"],
    )
    evaluator, attributes = train_scorers(train, s, seed, losses)
    return Encoders(identity, evaluator, clip, prior, attributes, losses)


def train_scorers(train: PortraitTensors, s, seed: int, losses: dict) -> tuple[EvaluatorCNN, AttributeClassifier]:
    """The evaluation's own models, the same for every generator: the independent identity evaluator and the
    style attribute classifier (their loss curves go into ``losses``)."""
    n_classes = int(train.identity.max()) + 1
    evaluator = EvaluatorCNN(crop=EVALUATOR_CROP.size)
    losses["evaluator"] = train_encoder(
        evaluator,
        NormSoftmaxHead(evaluator.head[-1].out_features, n_classes),
        train.images,
        train.boxes,
        train.identity,
        EVALUATOR_CROP,
        steps=s.evaluator_steps,
        batch=s.encoder_batch,
        lr=2e-3,
        seed=seed + SEEDS["evaluator"],
        desc="evaluator (cosine softmax)",
    )
    classes = [len(v) for v in portraits.STYLE_FACTORS.values()]
    attributes = AttributeClassifier(classes)
    losses["attributes"] = train_attributes(
        attributes,
        train.images,
        train.style,
        steps=s.attribute_steps,
        batch=s.encoder_batch,
        seed=seed + SEEDS["attributes"],
    )
    return evaluator, attributes


@dataclass
class PaperEncoders:
    """The paper profile's frozen parts: CLIP ViT-L/14 (``e_h`` and the prior's input) and the user's ArcFace
    (``e_f``) from the model cache, a prior trained here from CLIP's text to its image embeddings of the portraits,
    and the same evaluation models as the other profiles."""

    clip: ClipEncoder
    arcface: ArcFaceOnnx
    prior: EmbeddingPrior
    evaluator: EvaluatorCNN
    attributes: AttributeClassifier
    losses: dict[str, list[float]] = field(default_factory=dict)

    def modules(self) -> dict[str, nn.Module]:  # the pretrained parts stay in the cache
        return {"evaluator": self.evaluator, "prior": self.prior, "attributes": self.attributes}

    def encode_style(self, masked: torch.Tensor) -> torch.Tensor:
        return self.clip.images(masked)

    def style_embeddings(self, images: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        return self.encode_style(mask_faces(images, boxes))

    def identity_embeddings(self, images: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        return self.arcface(images, boxes)

    def text_embeddings(self, captions: list[str]) -> torch.Tensor:
        with torch.no_grad():
            return self.prior(self.clip.captions(captions))


def train_paper_encoders(train: PortraitTensors, s, seed: int, cache: Path, device: str) -> PaperEncoders:
    """Load CLIP ViT-L/14 and ArcFace from ``cache`` (see :mod:`.paper_models`), fit the prior on the training
    portraits' (caption, face-masked image) pairs and train the evaluation models."""
    from .paper_models import ARCFACE_FILE, CLIP_FOLDER

    clip = ClipEncoder(Path(cache) / CLIP_FOLDER, device)
    arcface = ArcFaceOnnx(Path(cache) / ARCFACE_FILE)
    config = GENERATORS[s.generator]
    if (clip.dim, arcface.dim) != (config.clip_dim, config.face_dim):
        raise ValueError(
            f"CLIP's embedding is {clip.dim}-d and ArcFace's {arcface.dim}-d; generator {s.generator!r} expects "
            f"{config.clip_dim} and {config.face_dim}"
        )
    losses: dict[str, list[float]] = {}
    prior = EmbeddingPrior(clip.dim)
    losses["prior"] = fit_prior(
        prior,
        clip.captions(train.captions),
        clip.images(mask_faces(train.images, train.boxes)),
        steps=s.prior_steps,
        batch=s.encoder_batch,
        lr=1e-3,
        seed=seed + SEEDS["prior"],
    )
    evaluator, attributes = train_scorers(train, s, seed, losses)
    return PaperEncoders(clip, arcface, prior, evaluator, attributes, losses)


def train_attributes(
    model: AttributeClassifier, images: torch.Tensor, codes: torch.Tensor, *, steps: int, batch: int, seed: int
) -> list[float]:
    def step(generator: torch.Generator) -> torch.Tensor:
        idx = torch.randint(len(images), (batch,), generator=generator)
        outs = model(images[idx])
        return sum(F.cross_entropy(o, codes[idx, j]) for j, o in enumerate(outs)) / len(outs)

    model.train()
    losses = fit(step, model.parameters(), steps=steps, lr=2e-3, seed=seed, desc="style attribute classifier")
    model.eval().requires_grad_(False)
    return losses


def train_generator(
    gen: Generator,
    images: torch.Tensor,
    e_h: torch.Tensor,
    e_f: torch.Tensor,
    *,
    steps: int,
    batch: int,
    lr: float,
    seed: int,
    p_style: float,
    p_face: float,
    checkpoints: Checkpoints | None = None,
) -> list[float]:
    """Reconstruction: each image from its own face-masked style embedding and its own face's identity embedding,
    with classifier-free-guidance dropout; resumes from ``checkpoints`` when an earlier run was interrupted."""

    def step(generator: torch.Generator) -> torch.Tensor:
        idx = torch.randint(len(images), (batch,), generator=generator)
        h, f = drop_conditions(e_h[idx], e_f[idx], p_style, p_face, generator)
        return training_loss(gen, images[idx], image_conditioning(gen, h, f), generator)

    gen.train()
    losses = fit(
        step,
        gen.parameters(),
        steps=steps,
        lr=lr,
        seed=seed,
        desc="generator",
        weight_decay=0.01,
        checkpoints=checkpoints,
    )
    gen.eval().requires_grad_(False)
    return losses


def resume_folder(root: Path, shaping: dict) -> Path:
    """Where an unfinished generator run keeps its checkpoints: outside the stage's outs (DVC removes those before
    a run), keyed by everything that shapes training, so a run with other params starts afresh."""
    return Path(root) / "build" / "resume" / "idsynth" / run_key(shaping)


def save_modules(folder: Path, modules: dict[str, nn.Module]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, module in modules.items():
        state = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
        save_file(state, folder / f"{name}.safetensors")
