"""A model cache in the layout the sd15 generator loads (see replab.diffusion.paper_models), filled with randomly
initialised models at diffusers' and transformers' test sizes and a small ONNX recogniser: it exercises the loading,
training and sampling code paths offline; it says nothing about what the real weights would reach."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPConfig, CLIPModel
from transformers.convert_slow_tokenizer import bytes_to_unicode

from replab.diffusion.paper_models import ARCFACE_FILE, CLIP_FOLDER, SD_FOLDER
from replab.diffusion.stable_diffusion import StableDiffusionConfig

CONFIG = StableDiffusionConfig(
    image_size=32, portrait_size=32, tokens=2, clip_dim=16, face_dim=8, model_dim=32, gradient_checkpointing=False
)
FACE_INPUT = 16  # the ONNX recogniser's input side (ArcFace's is 112)


def build(folder: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    sd = folder / SD_FOLDER
    UNet2DConditionModel(
        sample_size=CONFIG.image_size // 8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        layers_per_block=1,
        cross_attention_dim=CONFIG.model_dim,
        attention_head_dim=8,
        norm_num_groups=8,
    ).save_pretrained(sd / "unet")
    AutoencoderKL(  # four levels: a downscale of 8, as SD's VAE
        block_out_channels=(8, 8, 8, 8),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=CONFIG.image_size,
    ).save_pretrained(sd / "vae")
    DDPMScheduler(num_train_timesteps=1000, prediction_type="epsilon").save_pretrained(sd / "scheduler")

    # A character-level BPE vocabulary (no merges): every byte alone and word-final, then CLIP's two specials.
    chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars + [c + "</w>" for c in chars])}
    bos, eos = len(vocab), len(vocab) + 1
    vocab.update({"<|startoftext|>": bos, "<|endoftext|>": eos})
    text = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2)
    text.update(vocab_size=len(vocab), bos_token_id=bos, eos_token_id=eos, pad_token_id=eos)
    vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=32)
    clip = CLIPConfig(
        text_config={**text, "projection_dim": CONFIG.clip_dim},
        vision_config={**vision, "patch_size": 8, "projection_dim": CONFIG.clip_dim},
        projection_dim=CONFIG.clip_dim,
    )
    CLIPModel(clip).save_pretrained(folder / CLIP_FOLDER)
    (folder / CLIP_FOLDER / "vocab.json").write_text(json.dumps(vocab))
    (folder / CLIP_FOLDER / "merges.txt").write_text("#version: 0.2\n")
    write_onnx_recogniser(folder / ARCFACE_FILE, seed)
    return folder


def write_onnx_recogniser(path: Path, seed: int) -> None:
    """Flatten -> MatMul: (batch, 3, FACE_INPUT, FACE_INPUT) -> (batch, face_dim), batch dimension dynamic."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = np.random.default_rng(seed).normal(size=(3 * FACE_INPUT**2, CONFIG.face_dim)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input.1"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["embedding"])],
        "recogniser",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["batch", 3, FACE_INPUT, FACE_INPUT])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", CONFIG.face_dim])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
