"""The generator, its resumable training, the baseline arms and the paper profile's model check, at tiny sizes."""

import copy

import pytest
import torch

from replab.diffusion import training
from replab.diffusion.baselines import add_ip_adapter, ip_conditioning, set_adapter_scale, tune_on_references
from replab.diffusion.checkpoints import Checkpoints, run_key
from replab.diffusion.generator import (
    TINY,
    Conditioning,
    Generator,
    image_conditioning,
    run_unet,
    sample,
    training_loss,
)
from replab.diffusion.paper_models import missing_paper_models, require_paper_models


def tiny_generator(seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    return Generator(TINY)


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(1)
    images = torch.rand(8, 3, 32, 32, generator=g) * 2 - 1
    return images, torch.randn(8, TINY.clip_dim, generator=g), torch.randn(8, TINY.face_dim, generator=g)


def fixed_loss(gen, images, e_h, e_f) -> float:
    with torch.no_grad():
        return training_loss(gen, images, image_conditioning(gen, e_h, e_f), torch.Generator().manual_seed(7)).item()


def test_short_training_lowers_the_loss(batch):
    gen = tiny_generator()
    # Learnable images (a colour and a vertical ramp each), unlike noise.
    g = torch.Generator().manual_seed(2)
    ramp = torch.linspace(-1, 1, 32).view(1, 1, 32, 1)
    images = (torch.rand(8, 3, 1, 1, generator=g) * ramp).expand(8, 3, 32, 32).contiguous()
    batch = (images, *batch[1:])
    before = fixed_loss(gen, *batch)
    losses = training.train_generator(
        gen, *batch, steps=30, batch=8, lr=2e-3, seed=0, p_style=0.0, p_face=0.0, checkpoints=None
    )
    assert len(losses) == 30
    assert fixed_loss(gen, *batch) < 0.7 * before


def test_resumed_training_ends_with_the_uninterrupted_weights(batch, tmp_path, monkeypatch):
    kwargs = dict(steps=5, batch=4, lr=1e-3, seed=3, p_style=0.5, p_face=0.2)
    whole = tiny_generator()
    training.train_generator(whole, *batch, **kwargs)

    folder = tmp_path / run_key({"a": 1})
    calls = {"n": 0}
    real = training.training_loss

    def interrupted(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 4:  # dies in step 4: checkpoints exist after steps 2 only
            raise KeyboardInterrupt
        return real(*args, **kw)

    first = tiny_generator()
    monkeypatch.setattr(training, "training_loss", interrupted)
    with pytest.raises(KeyboardInterrupt):
        training.train_generator(first, *batch, **kwargs, checkpoints=Checkpoints(folder, first, every=2))
    monkeypatch.setattr(training, "training_loss", real)
    assert Checkpoints(folder, first, every=2).latest().name == "step-00000002"

    resumed = tiny_generator(seed=99)  # other initial weights: all must come from the checkpoint
    losses = training.train_generator(resumed, *batch, **kwargs, checkpoints=Checkpoints(folder, resumed, every=2))
    assert len(losses) == 5
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_run_key_depends_on_every_shaping_param():
    assert run_key({"a": 1, "b": 2}) == run_key({"b": 2, "a": 1})
    assert run_key({"a": 1, "b": 2}) != run_key({"a": 1, "b": 3})


def test_ip_adapter_at_scale_zero_is_the_base_unet_exactly(batch):
    gen = tiny_generator().eval().requires_grad_(False)
    x = torch.randn(3, 12, 16, 16)
    t = torch.tensor([10, 500, 900])
    e_h, e_f = batch[1][:3], batch[2][:3]
    zero = torch.zeros_like(e_f)
    base = run_unet(gen, x, t, Conditioning(gen.condition(e_h, None, zero), zero))
    arm = copy.deepcopy(gen)
    adapter = add_ip_adapter(arm, tokens=2)
    assert all(p.requires_grad for p in adapter)
    assert not any(p.requires_grad for n, p in arm.named_parameters() if "_ip" not in n and "encoder_hid_proj" not in n)
    for p in adapter:  # trained-looking adapter weights (to_v_ip starts at zero)
        torch.nn.init.normal_(p)
    set_adapter_scale(arm, 0.0)
    assert torch.equal(run_unet(arm, x, t, ip_conditioning(arm, e_h, e_f)), base)
    set_adapter_scale(arm, 1.0)
    assert not torch.allclose(run_unet(arm, x, t, ip_conditioning(arm, e_h, e_f)), base)


@pytest.mark.parametrize("mode", ["dreambooth", "textual_inversion"])
def test_tuning_arms_change_only_what_they_tune(mode, batch):
    gen = tiny_generator().eval().requires_grad_(False)
    original = {k: v.clone() for k, v in gen.state_dict().items()}
    tuned, conditioning, losses = tune_on_references(
        gen, batch[0][:1], batch[1][:1], mode=mode, steps=3, batch=2, lr=1e-2, seed=0
    )
    assert len(losses) == 3
    assert all(torch.equal(v, gen.state_dict()[k]) for k, v in original.items())  # the shared model is untouched
    cond, null = conditioning(batch[1][:2]), conditioning(batch[1][:2], null=True)
    assert torch.equal(null.class_labels, torch.zeros_like(null.class_labels))  # the guidance's empty slot
    if mode == "textual_inversion":
        assert tuned is gen and cond.class_labels.abs().sum() > 0  # only the identity slot moved
    else:
        # the slot holds the fixed rare identity (a unit vector, never trained), the weights move
        assert tuned is not gen and torch.allclose(cond.class_labels.norm(dim=-1), torch.ones(2))
        assert any(not torch.equal(v, tuned.state_dict()[k]) for k, v in original.items())
    images = sample(tuned, cond, null, guidance=2.0, steps=2, seed=0)
    assert images.shape == (2, 3, 32, 32) and images.abs().max() <= 1


def test_sampling_is_seeded_and_guidance_one_ignores_the_null(batch):
    gen = tiny_generator().eval()
    cond = image_conditioning(gen, batch[1][:2], batch[2][:2])
    null = image_conditioning(gen, batch[1][:2], 0 * batch[2][:2])
    a = sample(gen, cond, null, guidance=3.0, steps=3, seed=5)
    assert torch.equal(a, sample(gen, cond, null, guidance=3.0, steps=3, seed=5))
    assert not torch.equal(a, sample(gen, cond, null, guidance=3.0, steps=3, seed=6))
    assert torch.equal(
        sample(gen, cond, null, guidance=1.0, steps=3, seed=5), sample(gen, cond, None, guidance=1.0, steps=3, seed=5)
    )


def test_paper_profile_names_what_is_missing(tmp_path):
    (tmp_path / "stable-diffusion-v1-5" / "unet").mkdir(parents=True)
    missing = missing_paper_models(tmp_path)
    assert any(m.endswith("vae: missing") for m in missing)
    assert any("arcface.onnx" in m for m in missing) and any("clip-vit-large-patch14: missing" in m for m in missing)
    (tmp_path / "clip-vit-large-patch14").mkdir()
    (tmp_path / "clip-vit-large-patch14" / "config.json").write_text("{}")
    assert any(m.endswith("vocab.json: missing") for m in missing_paper_models(tmp_path))
    assert not any(m.endswith("unet: missing") for m in missing)
    with pytest.raises(FileNotFoundError, match="HF_HUB_OFFLINE"):
        require_paper_models(tmp_path)


def test_the_dreambooth_search_runs_past_scoring_until_it_reaches_our_score(monkeypatch):
    """Identity 0 reaches our score at step 6 (after the arm is scored at step 4), identity 1 never does: the
    DreamBooth-like search stops at 6 for the first and at reach_steps for the second, and both arms are scored on
    their step-4 samples. Tuning, sampling and scoring are stand-ins; each step takes one second."""
    from types import SimpleNamespace

    from replab.diffusion import experiment
    from replab.diffusion.params import IdsynthScale

    reach_at = {0: 6, 1: None}  # the step from which each identity's samples score at or above ours
    ran: list[tuple[str, int, int]] = []

    def fake_tune(gen, ref, e_h, *, mode, steps, batch, lr, seed, callback):
        k = seed - experiment.SEEDS["tune"]
        state = {"step": 0, "k": k}
        check = callback(state, lambda style, null=False: ("cond", style, null))
        for step in range(1, steps + 1):
            state["step"] = step
            if check(step, float(step)):
                break
        ran.append((mode, k, state["step"]))
        return state, lambda style, null=False: ("cond", style, null), []

    def fake_sample(tuned, cond, uncond, *, guidance, steps, seed):
        return torch.full((1, 1), float(tuned["step"]) + 100 * tuned["k"])

    def fake_scores(evaluator, gallery, images, boxes, target):
        step, k = int(images.item()) % 100, int(images.item()) // 100
        reached = reach_at[k] is not None and step >= reach_at[k]
        return {"cos": torch.tensor([0.9 if reached else 0.1])}

    monkeypatch.setattr(experiment, "tune_on_references", fake_tune)
    monkeypatch.setattr(experiment, "sample", fake_sample)
    monkeypatch.setattr(experiment.ev, "identity_scores", fake_scores)
    scored: list[torch.Tensor] = []
    target = torch.tensor([0, 1])
    st = SimpleNamespace(
        proto=SimpleNamespace(
            ids=[0, 1],
            target=target,
            refs=torch.zeros(2, 1),
            ref_boxes=torch.zeros(2, 1),
            gallery=None,
            style_boxes=torch.zeros(2, 4),
        ),
        gen=None,
        enc=SimpleNamespace(evaluator=None, style_embeddings=lambda ref, box: ref),
        e_h=torch.zeros(2, 1),
        seeds=[0, 1],
        score=lambda arm, images, which: scored.append(images.flatten()),
        timers=[],
    )
    ours = SimpleNamespace(sample_cos=[torch.tensor([0.5, 0.5])] * 2)
    params = SimpleNamespace(tuned_identities=2, identity_guidance=2.0, sample_steps=2)
    base = dict(
        generator="tiny",
        identity_steps=1,
        evaluator_steps=1,
        encoder_batch=2,
        clip_steps=1,
        prior_steps=1,
        attribute_steps=1,
        generator_steps=1,
        generator_batch=1,
        lr=1.0,
        dreambooth_lr=1.0,
        inversion_lr=1.0,
        checkpoint_every=1,
        ip_steps=1,
        styles_per_identity=1,
        scenes=1,
    )
    s = IdsynthScale(**base, tune_steps=4, tune_check_every=2, reach_steps=10, reach_check_every=3)
    rows = experiment.run_tuning_arms(st, {"image_guidance": ours}, params, s, seed=0)

    assert ran == [("dreambooth", 0, 6), ("dreambooth", 1, 10)] + [("textual_inversion", k, 4) for k in (0, 1)]
    db = [r for r in rows if r["arm"] == "dreambooth"]
    assert [r["time_to_our_score_s"] for r in db] == [6.0, None]  # checked at 2, 4, then every 3: 6, 9, and 10
    assert [r["tuning_s"] for r in db] == [4.0, 4.0] and [r["searched_s"] for r in db] == [6.0, 10.0]
    assert [r["last_below_s"] for r in db] == [4.0, 10.0]  # the crossing lies between step 4 and step 6
    assert all(r["search_steps"] == 10 for r in db)
    assert scored[0].tolist() == [4.0, 104.0]  # the arm is scored on its step-4 samples, not where the search ended
    assert len(st.timers) == 2  # each arm's inference is timed later, with every other arm
    with pytest.raises(ValueError, match="reach_steps"):
        IdsynthScale(**base, tune_steps=4, tune_check_every=2, reach_steps=3, reach_check_every=1)
