"""The generator: diffusers' UNet2DConditionModel on pixel-unshuffled portraits (the stand-in for Stable
Diffusion's latents), conditioned through the hybrid condition module's tokens in cross-attention and, as the
issue's laptop recipe asks, the identity embedding also projected into the time embedding
(``class_embed_type="projection"``).

Training is reconstruction with v-prediction and min-SNR weighting through DDPMScheduler; sampling is
EulerAncestralDiscreteScheduler with classifier-free guidance on the identity (the unconditional pass keeps the
style and drops the identity).
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, EulerAncestralDiscreteScheduler, UNet2DConditionModel
from torch import nn

from .condition import HybridCondition


@dataclass(frozen=True)
class GeneratorConfig:
    image_size: int = 32
    unshuffle: int = 2  # pixel_unshuffle factor: 32x32x3 -> 16x16x12
    block_out: tuple[int, ...] = (64, 128)
    model_dim: int = 128  # cross-attention width of the condition tokens
    head_dim: int = 32
    norm_groups: int = 16
    tokens: int = 4  # condition tokens per identity
    clip_dim: int = 32
    face_dim: int = 64
    train_timesteps: int = 1000
    snr_gamma: float = 5.0  # min-SNR weighting (Hang et al. 2023)

    def as_dict(self) -> dict:
        return asdict(self)


# A config the tests use: builds and runs a step in well under a second.
TINY = GeneratorConfig(block_out=(16, 32), model_dim=16, head_dim=8, norm_groups=8, tokens=2, clip_dim=8, face_dim=8)


class Generator(nn.Module):
    """The condition module and the UNet, trained together (the encoders stay frozen)."""

    def __init__(self, config: GeneratorConfig = GeneratorConfig()):
        super().__init__()
        self.config = config
        channels = 3 * config.unshuffle**2
        self.condition = HybridCondition(config.clip_dim, config.face_dim, config.model_dim, config.tokens)
        self.unet = UNet2DConditionModel(
            sample_size=config.image_size // config.unshuffle,
            in_channels=channels,
            out_channels=channels,
            block_out_channels=config.block_out,
            down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (len(config.block_out) - 1),
            up_block_types=("CrossAttnUpBlock2D",) * (len(config.block_out) - 1) + ("UpBlock2D",),
            layers_per_block=1,
            cross_attention_dim=config.model_dim,
            attention_head_dim=config.head_dim,
            norm_num_groups=config.norm_groups,
            class_embed_type="projection",
            projection_class_embeddings_input_dim=config.face_dim,
        )
        self.noise = DDPMScheduler(num_train_timesteps=config.train_timesteps, prediction_type="v_prediction")

    @property
    def device(self) -> torch.device:
        return self.unet.device

    def autocast(self):
        """The precision the UNet runs in (full here; the Stable Diffusion generator uses bfloat16 on CUDA)."""
        return contextlib.nullcontext()

    def to_model(self, images: torch.Tensor) -> torch.Tensor:
        return F.pixel_unshuffle(images, self.config.unshuffle)

    def to_image(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(x, self.config.unshuffle).clamp(-1, 1)


def drop_conditions(
    e_h: torch.Tensor, e_f: torch.Tensor, p_style: float, p_face: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Classifier-free-guidance dropout: zero each sample's style embedding with ``p_style`` and its identity
    embedding with ``p_face``, independently (the paper's 0.64 and 0.1)."""
    keep_h = (torch.rand(len(e_h), 1, generator=generator) >= p_style).to(e_h.dtype)
    keep_f = (torch.rand(len(e_f), 1, generator=generator) >= p_face).to(e_f.dtype)
    return e_h * keep_h, e_f * keep_f


@dataclass
class Conditioning:
    """One side of classifier-free guidance: the cross-attention context (batch, keys, model_dim), the vector
    projected into the time embedding (batch, face_dim), and extra attention-processor arguments."""

    context: torch.Tensor
    class_labels: torch.Tensor
    attention_kwargs: dict = field(default_factory=dict)
    image_embeds: torch.Tensor | None = None  # the IP-Adapter arm's identity, (batch, face_dim)


def run_unet(gen: Generator, x: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
    """The UNet's prediction for ``x`` at timesteps ``t``; the conditioning follows ``x`` to its device."""
    dev = x.device
    added = None if cond.image_embeds is None else {"image_embeds": [cond.image_embeds[:, None, :].to(dev)]}
    kwargs = {k: v.to(dev) if torch.is_tensor(v) else v for k, v in cond.attention_kwargs.items()}
    with gen.autocast():
        out = gen.unet(
            x,
            t.to(dev) if torch.is_tensor(t) else t,
            encoder_hidden_states=cond.context.to(dev),
            class_labels=cond.class_labels.to(dev),
            cross_attention_kwargs=kwargs or None,
            added_cond_kwargs=added,
        ).sample
    return out.float()


def training_loss(gen: Generator, images: torch.Tensor, cond: Conditioning, generator: torch.Generator) -> torch.Tensor:
    """The noise schedule's prediction target (v for ours, epsilon for Stable Diffusion 1.5) by MSE with
    min-SNR-gamma weights (``min(snr, gamma) / (snr + 1)`` for v, ``min(snr, gamma) / snr`` for epsilon), averaged
    over the batch. Every random draw comes from ``generator`` on the CPU, whatever the model's device."""
    x0 = gen.to_model(images)
    noise = torch.randn(x0.shape, generator=generator).to(x0.device)
    t = torch.randint(0, gen.noise.config.num_train_timesteps, (len(x0),), generator=generator)
    abar = gen.noise.alphas_cumprod[t].to(x0.device)
    t = t.to(x0.device)
    noisy = gen.noise.add_noise(x0, noise, t)
    snr = abar / (1 - abar)
    kind = gen.noise.config.prediction_type
    if kind == "v_prediction":
        target, weight = gen.noise.get_velocity(x0, noise, t), torch.clamp(snr, max=gen.config.snr_gamma) / (snr + 1)
    elif kind == "epsilon":
        target, weight = noise, torch.clamp(snr, max=gen.config.snr_gamma) / snr
    else:
        raise ValueError(f"prediction_type {kind!r}: training handles v_prediction and epsilon")
    per_sample = F.mse_loss(run_unet(gen, noisy, t, cond), target, reduction="none").mean(dim=(1, 2, 3))
    return (weight * per_sample).mean()


def _cat_kwargs(a: dict, b: dict) -> dict:
    out = {}
    for k, v in a.items():
        out[k] = torch.cat([v, b[k]]) if k == "identity_regions" else v
    return out


def image_conditioning(gen: Generator, e_h: torch.Tensor, e_f: torch.Tensor) -> Conditioning:
    return Conditioning(gen.condition(e_h, None, e_f), e_f)


def text_conditioning(gen: Generator, e_t: torch.Tensor, e_f: torch.Tensor) -> Conditioning:
    return Conditioning(gen.condition(None, e_t, e_f), e_f)


@torch.no_grad()
def sample(
    gen: Generator,
    cond: Conditioning,
    uncond: Conditioning | None,
    *,
    guidance: float,
    steps: int,
    seed: int,
) -> torch.Tensor:
    """Euler-ancestral sampling of ``len(cond.context)`` images (n, 3, H, W) in [-1, 1]; with ``uncond``,
    classifier-free guidance ``u + guidance (c - u)`` from one batched UNet call per step."""
    scheduler = EulerAncestralDiscreteScheduler.from_config(gen.noise.config)
    scheduler.set_timesteps(steps)
    generator = torch.Generator().manual_seed(seed)
    n, size = len(cond.context), gen.config.image_size // gen.config.unshuffle
    channels = gen.unet.config.in_channels
    x = (torch.randn(n, channels, size, size, generator=generator) * scheduler.init_noise_sigma).to(gen.device)
    both = uncond is not None and guidance != 1.0
    if both:
        cond = Conditioning(
            torch.cat([uncond.context, cond.context]),
            torch.cat([uncond.class_labels, cond.class_labels]),
            _cat_kwargs(uncond.attention_kwargs, cond.attention_kwargs),
            None if cond.image_embeds is None else torch.cat([uncond.image_embeds, cond.image_embeds]),
        )
    for t in scheduler.timesteps:
        pred = run_unet(gen, scheduler.scale_model_input(torch.cat([x, x]) if both else x, t), t, cond)
        if both:
            u, c = pred.chunk(2)
            pred = u + guidance * (c - u)
        x = scheduler.step(pred, t, x, generator=generator).prev_sample
    return gen.to_image(x)
