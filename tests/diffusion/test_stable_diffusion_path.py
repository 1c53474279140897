"""The sd15 generator (the paper profile) on a tiny random model cache in Stable Diffusion's layout: loading
offline, the VAE kept out of training, epsilon-prediction training, sampling, the encoders' preprocessing, the
arms. Real weights are never available here; these tests check the code path, not what SD 1.5 would reach."""

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from replab.diffusion.baselines import add_ip_adapter, ip_conditioning, set_adapter_scale, tune_on_references
from replab.diffusion.encoders import face_crops
from replab.diffusion.fit import fit
from replab.diffusion.generator import image_conditioning, run_unet, sample, training_loss
from replab.diffusion.paper_models import ARCFACE_FILE, CLIP_FOLDER, missing_paper_models, require_paper_models
from replab.diffusion.stable_diffusion import ArcFaceOnnx, ClipEncoder, load_generator

from . import tiny_pretrained
from .tiny_pretrained import CONFIG, FACE_INPUT


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tiny_pretrained.build(tmp_path_factory.mktemp("model_cache"))


# On a machine with CUDA the generator's tests also run there (bfloat16 autocast, CPU random streams).
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def gen(cache, request):
    return load_generator(cache, CONFIG, request.param)


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(3)
    images = torch.rand(4, 3, 32, 32, generator=g) * 2 - 1
    boxes = torch.tensor([[8.0, 8.0, 24.0, 24.0]]).repeat(4, 1)
    return images, boxes, torch.randn(4, CONFIG.clip_dim, generator=g), torch.randn(4, CONFIG.face_dim, generator=g)


def test_a_complete_cache_passes_the_check(cache):
    assert missing_paper_models(cache) == []
    require_paper_models(cache)  # does not raise


def test_loads_offline_and_keeps_the_vae_out_of_training(cache, gen, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    load_generator(cache, CONFIG, "cpu")
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    names = [n for n, _ in gen.named_parameters()]
    assert any(n.startswith("unet.") for n in names) and any(n.startswith("condition.") for n in names)
    assert not any("vae" in n for n in names) and not any(k.startswith("vae") for k in gen.state_dict())
    assert gen.noise.config.prediction_type == "epsilon"


def test_latents_round_trip_shapes_and_sampling(gen, batch):
    images, _, e_h, e_f = batch
    latents = gen.to_model(images)
    assert latents.shape == (4, 4, CONFIG.image_size // 8, CONFIG.image_size // 8)
    out = gen.to_image(latents)
    assert out.shape == images.shape and out.min() >= -1 and out.max() <= 1
    cond, null = image_conditioning(gen, e_h[:2], e_f[:2]), image_conditioning(gen, e_h[:2], 0 * e_f[:2])
    a = sample(gen, cond, null, guidance=3.0, steps=2, seed=1)
    assert a.shape == (2, 3, 32, 32) and torch.equal(a, sample(gen, cond, null, guidance=3.0, steps=2, seed=1))


def test_epsilon_training_lowers_the_loss_and_leaves_the_vae_alone(gen, batch):
    images, _, e_h, e_f = batch
    vae_before = {k: v.clone() for k, v in gen.vae.state_dict().items()}
    cond = image_conditioning(gen, e_h, e_f)
    gen.train()
    losses = fit(
        lambda g: training_loss(gen, images, image_conditioning(gen, e_h, e_f), g),
        gen.parameters(),
        steps=20,
        lr=3e-3,
        seed=0,
        desc="test",
    )
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
    assert all(torch.equal(v, gen.vae.state_dict()[k]) for k, v in vae_before.items())
    assert cond.context.shape == (4, CONFIG.tokens, CONFIG.model_dim)


def test_ip_adapter_at_scale_zero_is_the_base_unet(gen, batch):
    import copy

    images, _, e_h, e_f = batch
    x, t = gen.to_model(images), torch.tensor([10, 200, 500, 900], device=gen.device)
    base = run_unet(gen, x, t, image_conditioning(gen, e_h, 0 * e_f))
    ip = copy.deepcopy(gen)
    add_ip_adapter(ip, tokens=2)
    for v in ip.unet.attn_processors.values():  # make the adapter do something when on
        for p in getattr(v, "parameters", lambda: [])():
            torch.nn.init.normal_(p)
    set_adapter_scale(ip, 0.0)
    assert torch.allclose(run_unet(ip, x, t, ip_conditioning(ip, e_h, e_f)), base, atol=1e-5)
    set_adapter_scale(ip, 1.0)
    assert not torch.allclose(run_unet(ip, x, t, ip_conditioning(ip, e_h, e_f)), base, atol=1e-3)


def test_dreambooth_like_tunes_condition_and_unet_only(gen, batch):
    images, _, e_h, _ = batch
    tuned, conditioning, losses = tune_on_references(
        gen, images[:2], e_h[:2], mode="dreambooth", steps=2, batch=2, lr=1e-3, seed=0
    )
    assert len(losses) == 2 and tuned is not gen
    assert all(torch.equal(a, b) for a, b in zip(tuned.vae.state_dict().values(), gen.vae.state_dict().values()))
    assert not torch.equal(tuned.unet.conv_in.weight, gen.unet.conv_in.weight)
    assert conditioning(e_h[:1]).context.shape == (1, CONFIG.tokens, CONFIG.model_dim)


@pytest.mark.parametrize("device", DEVICES)
def test_clip_and_arcface_preprocessing(cache, batch, device):
    images, boxes, _, _ = batch
    clip = ClipEncoder(cache / CLIP_FOLDER, device)
    e_h = clip.images(images)
    assert e_h.shape == (4, CONFIG.clip_dim) and torch.allclose(e_h.norm(dim=1), torch.ones(4))
    e_t = clip.captions(["a sketch on a striped background", "a photo"])
    assert e_t.shape == (2, CONFIG.clip_dim) and not torch.allclose(e_t[0], e_t[1])

    arcface = ArcFaceOnnx(cache / ARCFACE_FILE)
    assert (arcface.size, arcface.dim, arcface.batched) == (FACE_INPUT, CONFIG.face_dim, True)
    # RGB crops in [-1, 1] (ArcFace's (x - 127.5) / 127.5), through the recogniser's own weights.
    import onnx
    from onnx import numpy_helper

    w = numpy_helper.to_array(onnx.load(cache / ARCFACE_FILE).graph.initializer[0])
    crops = face_crops(images, boxes, FACE_INPUT, arcface.margin).flatten(1)
    expected = F.normalize(crops @ torch.from_numpy(w), dim=-1)
    assert torch.allclose(arcface(images, boxes), expected, atol=1e-4)


@pytest.mark.exhaustive  # ~30 s on 2 cores
def test_the_study_runs_end_to_end_on_the_sd15_path(cache, tmp_path, monkeypatch):
    """Every arm of the study (encoders, fine-tuning, IP-Adapter, tuning arms, scenes, sweeps) through the sd15
    generator on the tiny portraits and the tiny random cache."""
    import yaml

    from replab.diffusion import experiment, training
    from replab.diffusion.params import IdsynthParams

    from ..conftest import ROOT

    if not (ROOT / "data" / "portraits" / "tiny").exists():
        pytest.skip("data/ is not built: run `make data` first")
    (tmp_path / "data").symlink_to(ROOT / "data")
    section = yaml.safe_load((ROOT / "params.yaml").read_text())["idsynth"]
    params = IdsynthParams(**{**section, "model_cache": str(cache)})
    scale = params.scale["tiny"].model_copy(update={"generator": "sd15"})
    monkeypatch.setitem(training.GENERATORS, "sd15", CONFIG)
    study = experiment.run_study(params, scale, "tiny", 0, tmp_path, tmp_path / "models")
    assert {"image_guidance", "text_guidance", "no_id", "ip_adapter"} <= set(study.arms)
    assert study.arms["image_guidance"].grid.shape[-1] == 32 and study.scenes
    saved = {p.stem for p in (tmp_path / "models").glob("*.safetensors")}
    assert saved == {"evaluator", "prior", "attributes", "generator"}  # the pretrained parts stay in the cache
