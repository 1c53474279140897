"""The pretrained parts of the ``sd15`` generator (the ``paper`` profile), from a local folder only (no Hub access
at run time):

- ``stable-diffusion-v1-5/``: a diffusers-layout Stable Diffusion 1.5 (``unet/``, ``vae/``, ``scheduler/`` are
  used), e.g. ``huggingface-cli download`` of a SD 1.5 repository into that folder;
- ``clip-vit-large-patch14/``: transformers' CLIP ViT-L/14, both towers with their projections and the tokenizer
  (``config.json``, the weights, ``vocab.json``, ``merges.txt``);
- ``arcface.onnx``: an ArcFace recogniser the user provides (e.g. insightface's ``w600k_r50.onnx``).
"""

from __future__ import annotations

from pathlib import Path

SD_FOLDER, CLIP_FOLDER, ARCFACE_FILE = "stable-diffusion-v1-5", "clip-vit-large-patch14", "arcface.onnx"
REQUIRED = {
    SD_FOLDER: ("unet", "vae", "scheduler"),  # its text encoder is not used: the hybrid condition replaces the text
    CLIP_FOLDER: ("config.json", "vocab.json", "merges.txt"),
    ARCFACE_FILE: (),
}


def missing_paper_models(cache: Path) -> list[str]:
    """What the folder lacks, one line each (empty when everything is there)."""
    out = []
    for name, parts in REQUIRED.items():
        path = Path(cache) / name
        if not path.exists():
            out.append(f"{path}: missing")
            continue
        out += [f"{path / part}: missing" for part in parts if not (path / part).exists()]
    return out


def require_paper_models(cache: Path) -> None:
    """Stop with what is missing; the profile needs every part and never downloads one."""
    missing = missing_paper_models(cache)
    if missing:
        raise FileNotFoundError(
            "the sd15 generator loads Stable Diffusion 1.5, CLIP ViT-L/14 and an ArcFace model from "
            f"idsynth.model_cache ({cache}) with HF_HUB_OFFLINE=1; missing:\n  " + "\n  ".join(missing)
        )
