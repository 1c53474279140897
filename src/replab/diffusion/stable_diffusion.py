"""The ``paper`` profile's generator and encoders, from the pretrained parts in ``idsynth.model_cache`` (see
:mod:`.paper_models`): Stable Diffusion 1.5's UNet (fine-tuned whole, as the paper does) and VAE (frozen), CLIP
ViT-L/14's image and text towers for ``e_h`` and the prior's ``e_T``, and the user's ArcFace ONNX model for
``e_f``. Everything loads from local folders with ``HF_HUB_OFFLINE=1``; nothing is downloaded.

The generator keeps the laptop generator's interface (``condition``, ``unet``, ``noise``, ``to_model``,
``to_image``, ``config``), so training, sampling and every arm run unchanged; the portraits are resized to
``config.image_size`` for the VAE and the outputs back to the portraits' size for scoring.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .condition import HybridCondition
from .encoders import face_crops
from .generator import Generator
from .paper_models import SD_FOLDER

# CLIP's input normalisation (the values in CLIP ViT-L/14's preprocessor_config.json).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class StableDiffusionConfig:
    """Shapes of the paper profile's generator. ``clip_dim``, ``face_dim`` and ``model_dim`` are checked against
    the loaded models (CLIP ViT-L/14: 768, ArcFace: 512, SD 1.5's cross-attention: 768)."""

    image_size: int = 256  # what the VAE sees; latents are image_size / 8 (SD 1.5 was trained at 512)
    portrait_size: int = 64  # the paper profile's portraits; outputs are resized back to it
    unshuffle: int = 8  # the VAE's downscale factor (the laptop generator's pixel_unshuffle plays this part)
    tokens: int = 4
    clip_dim: int = 768
    face_dim: int = 512
    model_dim: int = 768
    snr_gamma: float = 5.0
    gradient_checkpointing: bool = True

    def as_dict(self) -> dict:
        return asdict(self)


class StableDiffusionGenerator(Generator):
    """The hybrid condition module in front of Stable Diffusion's UNet, which it conditions in place of the text
    tokens; the VAE encodes and decodes and is never trained (it is held outside the module's parameters and
    state dict: it comes from the cache, not from our checkpoints)."""

    def __init__(self, unet, vae, noise, config: StableDiffusionConfig):
        nn.Module.__init__(self)
        if unet.config.cross_attention_dim != config.model_dim:
            raise ValueError(
                f"the UNet's cross-attention width is {unet.config.cross_attention_dim}, the config says "
                f"{config.model_dim}"
            )
        self.config = config
        self.condition = HybridCondition(config.clip_dim, config.face_dim, config.model_dim, config.tokens)
        self.unet = unet
        self.noise = noise
        self.__dict__["vae"] = vae.requires_grad_(False).eval()  # not a submodule: frozen, not checkpointed
        if config.gradient_checkpointing:
            unet.enable_gradient_checkpointing()

    @property
    def device(self) -> torch.device:
        return self.unet.device

    def _apply(self, fn, *args, **kwargs):  # .to()/.cuda() move the VAE along with the modules
        self.__dict__["vae"] = self.vae._apply(fn, *args, **kwargs)
        return super()._apply(fn, *args, **kwargs)

    def autocast(self):
        """bfloat16 autocast on CUDA (SD 1.5 does not fit an fp32 fine-tune's activations otherwise)."""
        if self.device.type != "cuda":
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=torch.bfloat16)

    @torch.no_grad()
    def to_model(self, images: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(images.to(self.device), size=self.config.image_size, mode="bicubic", align_corners=False)
        latents = self.vae.encode(x.clamp(-1, 1)).latent_dist.mode()  # the mean: deterministic, as SD fine-tunes do
        return latents * self.vae.config.scaling_factor

    @torch.no_grad()
    def to_image(self, x: torch.Tensor) -> torch.Tensor:
        images = self.vae.decode(x.to(self.device) / self.vae.config.scaling_factor).sample.float()
        return F.interpolate(images, size=self.config.portrait_size, mode="area").clamp(-1, 1).cpu()


def _offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"  # the paper profile never downloads; a missing file is an error


def load_generator(cache: Path, config: StableDiffusionConfig, device: str | torch.device) -> StableDiffusionGenerator:
    """Stable Diffusion 1.5's UNet, VAE and noise schedule from ``cache/stable-diffusion-v1-5`` (diffusers layout)."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

    _offline()
    folder = Path(cache) / SD_FOLDER
    unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", local_files_only=True)
    vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", local_files_only=True)
    noise = DDPMScheduler.from_pretrained(folder, subfolder="scheduler", local_files_only=True)
    return StableDiffusionGenerator(unet, vae, noise, config).to(device)


@contextlib.contextmanager
def _quiet_transformers():
    from transformers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)


class ClipEncoder:
    """CLIP ViT-L/14's image embedding (``e_h``, of the face-masked image) and text embedding (the prior's input),
    unit norm, frozen."""

    def __init__(self, folder: Path, device: str | torch.device):
        from transformers import CLIPTextModelWithProjection, CLIPTokenizer, CLIPVisionModelWithProjection

        _offline()
        with _quiet_transformers():  # each tower loads from the whole CLIP checkpoint: the other's keys are unused
            self.vision = CLIPVisionModelWithProjection.from_pretrained(folder, local_files_only=True).to(device)
            self.text = CLIPTextModelWithProjection.from_pretrained(folder, local_files_only=True).to(device)
        self.vision.eval().requires_grad_(False)
        self.text.eval().requires_grad_(False)
        self.tokenizer = CLIPTokenizer.from_pretrained(folder, local_files_only=True)
        self.length = self.text.config.max_position_embeddings
        self.device = torch.device(device)
        self.dim = self.vision.config.projection_dim

    @torch.no_grad()
    def images(self, images: torch.Tensor, chunk: int = 64) -> torch.Tensor:
        """(n, 3, H, W) in [-1, 1] -> (n, dim) on the CPU."""
        size = self.vision.config.image_size
        mean = torch.tensor(CLIP_MEAN, device=self.device)[:, None, None]
        std = torch.tensor(CLIP_STD, device=self.device)[:, None, None]
        out = []
        for i in range(0, len(images), chunk):
            x = F.interpolate(images[i : i + chunk].to(self.device), size=size, mode="bicubic", align_corners=False)
            x = ((x.clamp(-1, 1) + 1) / 2 - mean) / std
            out.append(F.normalize(self.vision(pixel_values=x).image_embeds, dim=-1).cpu())
        return torch.cat(out)

    @torch.no_grad()
    def captions(self, captions: list[str], chunk: int = 256) -> torch.Tensor:
        out = []
        for i in range(0, len(captions), chunk):
            tokens = self.tokenizer(
                captions[i : i + chunk], padding=True, truncation=True, max_length=self.length, return_tensors="pt"
            )
            embeds = self.text(**{k: v.to(self.device) for k, v in tokens.items()}).text_embeds
            out.append(F.normalize(embeds, dim=-1).cpu())
        return torch.cat(out)


class ArcFaceOnnx:
    """An ArcFace recogniser in ONNX (e.g. insightface's ``w600k_r50.onnx``): RGB face crops normalised as
    ``(x - 127.5) / 127.5`` -- the portraits' [-1, 1] range -- at the model's input size (112), 512-d out.
    The portraits carry face boxes, not the five landmarks insightface aligns with: the crop is the box with a
    margin."""

    def __init__(self, path: Path, margin: float = 1.3):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # share the cores torch was given
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle threads sleep
        self.session = onnxruntime.InferenceSession(str(path), options, providers=onnxruntime.get_available_providers())
        spec = self.session.get_inputs()[0]
        self.input, self.size = spec.name, int(spec.shape[-1])
        self.batched = not isinstance(spec.shape[0], int) or spec.shape[0] != 1
        self.margin = margin
        self.dim = int(self.session.get_outputs()[0].shape[-1])

    def __call__(self, images: torch.Tensor, boxes: torch.Tensor, chunk: int = 64) -> torch.Tensor:
        crops = face_crops(images, boxes, self.size, self.margin).numpy().astype(np.float32)
        step = chunk if self.batched else 1
        rows = [self.session.run(None, {self.input: crops[i : i + step]})[0] for i in range(0, len(crops), step)]
        return F.normalize(torch.from_numpy(np.concatenate(rows)).float(), dim=-1)
