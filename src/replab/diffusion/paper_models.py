"""The ``paper`` profile's pretrained parts, from a local folder only (no Hub access at run time):

- ``stable-diffusion-v1-5/``: a diffusers-layout Stable Diffusion 1.5 (``model_index.json``, ``unet/``, ``vae/``,
  ``text_encoder/``, ``tokenizer/``, ``scheduler/``), e.g. ``huggingface-cli download`` of a SD 1.5 repository;
- ``clip-vit-large-patch14/``: transformers' CLIP ViT-L/14 (``config.json`` and weights);
- ``arcface.onnx``: an ArcFace recogniser the user provides (e.g. insightface's ``w600k_r50.onnx``).
"""

from __future__ import annotations

from pathlib import Path

REQUIRED = {
    "stable-diffusion-v1-5": ("model_index.json", "unet", "vae", "text_encoder", "tokenizer", "scheduler"),
    "clip-vit-large-patch14": ("config.json",),
    "arcface.onnx": (),
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
            "the paper profile loads Stable Diffusion 1.5, CLIP ViT-L/14 and an ArcFace model from "
            f"idsynth.model_cache ({cache}) with HF_HUB_OFFLINE=1; missing:\n  " + "\n  ".join(missing)
        )
    raise NotImplementedError(
        f"the pretrained parts are all in {cache}, but fine-tuning Stable Diffusion 1.5 with the hybrid condition "
        "is not written yet: this version runs the tiny and laptop profiles only"
    )
