"""The baseline arms that change the model: an IP-Adapter-style arm through diffusers' IP-Adapter machinery (frozen
UNet, decoupled ``to_k_ip``/``to_v_ip``), a DreamBooth-like per-identity fine-tune of the whole generator and a
Textual-Inversion-like arm that optimises only the identity slot. (No-ID input and text guidance need no new
weights: they are conditionings of the trained generator, in :mod:`.generator`.)
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from diffusers.models.attention_processor import AttnProcessor2_0, IPAdapterAttnProcessor2_0
from diffusers.models.embeddings import ImageProjection, MultiIPAdapterImageProjection
from torch import nn

from .fit import Callback, fit
from .generator import Conditioning, Generator, drop_conditions, training_loss


def _hidden_size(unet, name: str) -> int:
    """The attention module's width from its place in the UNet (how diffusers' IP-Adapter loader finds it)."""
    out = unet.config.block_out_channels
    if name.startswith("mid_block"):
        return out[-1]
    if name.startswith("up_blocks"):
        return list(reversed(out))[int(name.split(".")[1])]
    return out[int(name.split(".")[1])]


def add_ip_adapter(gen: Generator, tokens: int = 4) -> list[nn.Parameter]:
    """Freeze ``gen`` and give its UNet an IP-Adapter for the identity embedding, as diffusers'
    ``_load_ip_adapter_weights`` builds one: ``IPAdapterAttnProcessor2_0`` on every cross-attention (zero-initialised
    ``to_v_ip``, so training starts from the base model) and an ``ImageProjection`` of the identity embedding into
    ``tokens`` tokens. Returns the adapter's parameters (the only trainable ones)."""
    gen.requires_grad_(False)
    unet, device = gen.unet, gen.device
    processors = {}
    for name in unet.attn_processors:
        if name.endswith("attn2.processor"):
            processors[name] = IPAdapterAttnProcessor2_0(
                hidden_size=_hidden_size(unet, name),
                cross_attention_dim=unet.config.cross_attention_dim,
                num_tokens=(tokens,),
                scale=1.0,
            )
            for v in processors[name].to_v_ip:
                nn.init.zeros_(v.weight)
        else:
            processors[name] = AttnProcessor2_0()
    adapter = [p for proc in processors.values() if isinstance(proc, nn.Module) for p in proc.parameters()]
    unet.set_attn_processor(dict(processors))  # (it empties the dict it is given)
    projection = ImageProjection(
        image_embed_dim=gen.config.face_dim,
        cross_attention_dim=unet.config.cross_attention_dim,
        num_image_text_embeds=tokens,
    )
    unet.encoder_hid_proj = MultiIPAdapterImageProjection([projection])
    unet.register_to_config(encoder_hid_dim_type="ip_image_proj")
    adapter += list(unet.encoder_hid_proj.parameters())
    unet.to(device)  # the new layers were built on the CPU (the parameters keep their identity)
    for p in adapter:
        p.requires_grad_(True)
    return adapter


def set_adapter_scale(gen: Generator, scale: float) -> None:
    """``pipeline.set_ip_adapter_scale`` for our UNet: 0 switches the adapter off (the base model's output)."""
    for proc in gen.unet.attn_processors.values():
        if isinstance(proc, IPAdapterAttnProcessor2_0):
            proc.scale = [scale]


def ip_conditioning(gen: Generator, e_h: torch.Tensor, e_f: torch.Tensor) -> Conditioning:
    """The IP-Adapter arm: the base model's identity-free condition, the identity through the adapter only."""
    zero = torch.zeros_like(e_f)
    return Conditioning(gen.condition(e_h, None, zero), zero, image_embeds=e_f)


def train_ip_adapter(
    gen: Generator,
    images: torch.Tensor,
    e_h: torch.Tensor,
    e_f: torch.Tensor,
    *,
    tokens: int,
    steps: int,
    batch: int,
    lr: float,
    seed: int,
    p_style: float,
    p_face: float,
) -> tuple[Generator, list[float]]:
    """A copy of the trained generator with an IP-Adapter trained on the training set (the base stays frozen)."""
    arm = copy.deepcopy(gen)
    adapter = add_ip_adapter(arm, tokens)

    def step(generator: torch.Generator) -> torch.Tensor:
        idx = torch.randint(len(images), (batch,), generator=generator)
        h, f = drop_conditions(e_h[idx], e_f[idx], p_style, p_face, generator)
        return training_loss(arm, images[idx], ip_conditioning(arm, h, f), generator)

    losses = fit(step, adapter, steps=steps, lr=lr, seed=seed, desc="IP-Adapter")
    arm.eval().requires_grad_(False)
    return arm, losses


def tune_on_references(
    gen: Generator,
    references: torch.Tensor,
    e_h: torch.Tensor,
    *,
    mode: str,
    steps: int,
    batch: int,
    lr: float,
    seed: int,
    callback: Callable[[Generator, Callable[[torch.Tensor], Conditioning]], Callback] | None = None,
) -> tuple[Generator, Callable[[torch.Tensor], Conditioning], list[float]]:
    """The per-identity arms, on one identity's reference images (n, 3, H, W) with their face-masked style
    embeddings ``e_h`` (n, clip_dim):

    - ``"dreambooth"``: fine-tune a copy of the whole generator (condition module and UNet) to reconstruct the
      references with a fixed random unit identity in the slot (DreamBooth's rare token: one the base model never
      saw, so sampling can guide it against the empty slot as ours is guided);
    - ``"textual_inversion"``: keep the generator frozen and optimise only the identity embedding (init 0).

    Returns the tuned generator, ``conditioning(e_h_of_the_target_style, null=False)`` for sampling (``null``:
    the empty slot, the guidance's unconditional side), and the losses.
    ``callback(tuned, conditioning)`` builds the per-step callback of :func:`fit` (to score the arm while it
    tunes; its time is not counted)."""
    if mode == "dreambooth":
        tuned = copy.deepcopy(gen).train().requires_grad_(True)
        rare = torch.randn(gen.config.face_dim, generator=torch.Generator().manual_seed(seed))
        slot = rare / rare.norm()  # the identity encoder's embeddings are unit vectors too
        params = list(tuned.parameters())
    elif mode == "textual_inversion":
        tuned = gen
        slot = nn.Parameter(torch.zeros(gen.config.face_dim))
        params = [slot]
    else:
        raise ValueError(f"mode is dreambooth or textual_inversion, got {mode!r}")

    def conditioning(style: torch.Tensor, null: bool = False) -> Conditioning:
        f = torch.zeros_like(slot) if null else slot.detach()
        f = f.expand(len(style), -1)
        return Conditioning(tuned.condition(style, None, f), f)

    def step(generator: torch.Generator) -> torch.Tensor:
        idx = torch.randint(len(references), (batch,), generator=generator)
        f = slot.expand(batch, -1)
        return training_loss(tuned, references[idx], Conditioning(tuned.condition(e_h[idx], None, f), f), generator)

    done = callback(tuned, conditioning) if callback is not None else None
    losses = fit(step, params, steps=steps, lr=lr, seed=seed, desc=mode.replace("_", " "), callback=done)
    tuned.eval().requires_grad_(False)
    return tuned, conditioning, losses
