import itertools
import math
import time

import numpy as np
import pytest
import torch

from replab.edge import confidant as cf
from replab.edge.confidant_headline import headline
from replab.edge.confidant_params import DeviceKind
from replab.edge.emulate import EmulatedDevice, emulation_available
from replab.edge.llm import (
    gloss_texts,
    gpt2_config,
    gpt2_layers,
    load_checkpoint,
    n_parameters,
    stream_batches,
    token_stream,
    train_tokenizer,
)
from replab.edge.memory_model import (
    LayerFootprint,
    fewest_devices,
    in_flight,
    plan_memory,
    probe_runtime_mb,
    stage_memory,
)
from replab.edge.partition import InfeasiblePartition
from replab.edge.pipeline import PipelineConfig, build_layers, launch, single_process_losses
from replab.measure import machine

from ..conftest import ROOT

TINY = dict(n_blocks=2, d_model=32, n_heads=4, vocab=300, seq_len=16)
available, why = emulation_available()


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    texts = gloss_texts(ROOT / "data")[:3000]
    tok = train_tokenizer(texts, TINY["vocab"])
    path = tmp_path_factory.mktemp("tokens") / "tokens.npy"
    np.save(path, token_stream(tok, texts))
    return str(path)


@pytest.mark.parametrize("tied", [False, True])
def test_gpt2_chain_equals_transformers_gpt2_and_is_causal(tmp_path, tied):
    from transformers import GPT2LMHeadModel

    config = gpt2_config(**TINY)
    config.tie_word_embeddings = tied
    torch.manual_seed(1)
    reference = GPT2LMHeadModel(config).eval()
    reference.save_pretrained(tmp_path)
    layers = gpt2_layers(**TINY)
    with torch.no_grad():
        load_checkpoint(layers, tmp_path)
    chain = torch.nn.Sequential(*layers)
    ids = torch.randint(0, TINY["vocab"], (2, 16))
    torch.testing.assert_close(chain(ids), reference(ids).logits)
    later = ids.clone()
    later[:, -1] = (later[:, -1] + 1) % TINY["vocab"]
    torch.testing.assert_close(chain(later)[:, :-1], chain(ids)[:, :-1])  # no token sees the future
    assert sum(p.numel() for p in chain.parameters()) == n_parameters(**TINY)


def test_gpt2_small_sized_model_has_gpt2_smalls_parameter_count():
    assert abs(n_parameters(n_blocks=12, d_model=768, n_heads=12, vocab=25_000, seq_len=128) - 124.24e6) < 0.05e6


def test_every_parameter_lies_in_exactly_one_sub_model():
    whole = gpt2_layers(**TINY, seed=3)
    starts = [0, 1, 3]
    stages = [range(a, b) for a, b in zip(starts, starts[1:] + [len(whole)])]
    seen = {}
    for r in stages:
        part = gpt2_layers(**TINY, seed=3, only=r)
        assert all((layer is None) == (i not in r) for i, layer in enumerate(part))
        for i in r:
            for name, p in part[i].named_parameters():
                assert (i, name) not in seen
                seen[(i, name)] = p
    expected = {(i, n): p for i, layer in enumerate(whole) for n, p in layer.named_parameters()}
    assert seen.keys() == expected.keys()
    for key, p in expected.items():
        torch.testing.assert_close(seen[key], p)  # a rank builds the same weights as the whole model


def test_tokenizer_and_batches_are_deterministic():
    texts = gloss_texts(ROOT / "data")[:500]
    a, b = train_tokenizer(texts, 400), train_tokenizer(texts, 400)
    assert a.get_vocab() == b.get_vocab()
    stream = token_stream(a, texts)
    assert stream.max() < 400 and (stream == token_stream(b, texts)).all()
    (x, y), *_ = stream_batches(stream, 2, 3, 8, seed=4)
    (x2, y2), *_ = stream_batches(stream, 2, 3, 8, seed=4)
    assert torch.equal(x, x2) and torch.equal(x[:, 1:], y[:, :-1])
    with pytest.raises(ValueError, match="too short"):
        stream_batches(stream[:5], 1, 1, 8)


def fp(params, trainable, saved, output=1):
    return LayerFootprint(params, trainable, trainable, saved, output)


def test_memory_plan_minimises_the_largest_stage_and_names_the_fewest_devices():
    MB = 2**20
    layers = [fp(10 * MB, 10 * MB, 1 * MB), *[fp(5 * MB, 5 * MB, 2 * MB)] * 4, fp(8 * MB, 8 * MB, 3 * MB)]
    for n in (2, 3):
        plan = plan_memory(layers, n, math.inf, n_micro=2, runtime_mb=100)
        best = min(
            max(
                stage_memory(layers, range(a, b), n, i, 2, "gpipe", 100).total
                for i, (a, b) in enumerate(zip((0, *cuts), (*cuts, len(layers))))
            )
            for cuts in itertools.combinations(range(1, len(layers)), n - 1)
        )
        assert plan.peak_mb == pytest.approx(best)
        assert plan.starts[0] == 0 and len(plan.stages) == n
    need = plan_memory(layers, 2, math.inf, n_micro=2, runtime_mb=100).peak_mb
    with pytest.raises(InfeasiblePartition, match=r"fewest devices of this kind that fit it: 3"):
        plan_memory(layers, 2, need - 1, n_micro=2, runtime_mb=100)
    assert fewest_devices(layers, need - 1, 2, runtime_mb=100) == 3
    with pytest.raises(InfeasiblePartition, match="one layer alone exceeds"):
        plan_memory(layers, 2, 150, n_micro=2, runtime_mb=100)
    assert in_flight("gpipe", 4, 3, 2) == 4 and in_flight("1f1b", 4, 3, 0) == 3 and in_flight("1f1b", 4, 3, 2) == 1


# Embedding-heavy: ~37 M parameters (590 MB with gradients and Adam) for little compute, so the model's own
# terms, not the runtime, make up much of each rank's peak.
MEDIUM = dict(n_blocks=2, d_model=512, n_heads=8, vocab=30_000, seq_len=64)


@pytest.fixture(scope="module")
def medium_tokens(tmp_path_factory):
    path = tmp_path_factory.mktemp("tokens") / "medium.npy"
    np.save(path, (np.arange(20_000) * 7919 % MEDIUM["vocab"]).astype(np.int32))
    return str(path)


def test_lora_adapters_are_the_same_whether_a_rank_or_the_whole_model_builds_them(tokens):
    """What makes a LoRA pipeline train as one process does (checked end to end by hand; the stage runs LoRA too):
    each layer's adapters are drawn from that layer's seed, and only they train."""
    config = PipelineConfig(
        starts=[0, 2], arch="gpt2", tokens=tokens, model=TINY, batch=4, n_microbatches=2, lora_rank=4
    )
    whole = build_layers(config)
    part = build_layers(config, only=range(2, 4))
    for i in (2, 3):
        a, b = dict(whole[i].named_parameters()), dict(part[i].named_parameters())
        assert a.keys() == b.keys() and any("lora_" in n for n in a)
        for n in a:
            torch.testing.assert_close(a[n], b[n])
            assert a[n].requires_grad == ("lora_" in n)


def test_pipeline_matches_one_process_and_memory_model_matches_measured_peaks(medium_tokens):
    """1F1B (the stage's schedule): the pipeline's losses equal one process's, and every rank's VmHWM is within
    the stated 15 % of the memory model, on a model whose own memory (parameters, optimiser, activations) is a
    large part of each rank's peak, so a wrong term shows. (LoRA is not covered here: in the laptop run the model
    misses PEFT's transients by up to 13 % of the head stage's peak.)"""
    starts = [0, 1, 3]
    config = PipelineConfig(
        starts=starts,
        arch="gpt2",
        tokens=medium_tokens,
        model=MEDIUM,
        steps=2,
        batch=8,
        n_microbatches=4,
        schedule="1f1b",
        lr=1e-3,
    )
    n = len(starts)
    result = launch(config, env_extra={r: cf.RANK_ENV for r in range(n)})
    np.testing.assert_allclose(result["losses"], single_process_losses(config), rtol=1e-5)
    runtime = probe_runtime_mb("gpt2", False, env=cf.RANK_ENV)
    footprints = cf.footprints(config)
    modelled = [stage_memory(footprints, config.stage_range(i), n, i, 4, "1f1b", runtime) for i in range(n)]
    measured = [r["peak_rss_mb"] for r in result["ranks"]]
    for m, peak in zip(modelled, measured):
        assert abs(m.total / peak - 1) <= 0.15, (m.as_dict(), peak)
    # Above the runtime too: the model's own terms, summed over ranks, within the same 15 %.
    above = sum(m.total - runtime for m in modelled)
    assert above > 0.3 * sum(m.total for m in modelled)
    assert abs(above / sum(p - runtime for p in measured) - 1) <= 0.15, ([m.as_dict() for m in modelled], measured)


def test_a_lora_pipeline_trains_as_one_process_does(tokens):
    config = PipelineConfig(
        starts=[0, 2], arch="gpt2", tokens=tokens, model=TINY, steps=2, batch=4, n_microbatches=2, lr=1e-2, lora_rank=4
    )
    np.testing.assert_allclose(launch(config)["losses"], single_process_losses(config), rtol=1e-6)


def test_a_killed_rank_is_reported_with_its_device(monkeypatch, tokens):
    """The mapping from the kernel's OOM kill to the error, without root: the cluster's counter says device 1."""

    class Cluster:
        emulated, master_addr = True, "127.0.0.1"

        def __init__(self, devices, enabled=True):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def command(self, i):
            return []

        def env(self, i):
            return {}

        def oom_kills(self):
            return [0, 1]

    def killed(*args, **kwargs):
        raise RuntimeError("pipeline ranks failed; rank 1 (exit -9)")

    monkeypatch.setattr(cf, "EmulatedCluster", Cluster)
    monkeypatch.setattr(cf, "launch", killed)
    config = PipelineConfig(starts=[0, 2], arch="gpt2", tokens=tokens, model=TINY, steps=1, batch=2, n_microbatches=1)
    devices = [EmulatedDevice("a", 1.0, 900, 100), EmulatedDevice("b", 1.0, 100, 100)]
    with pytest.raises(cf.DeviceOutOfMemory, match=r"b \(stage 1, cap 100 MB\)"):
        cf.run_on_devices(config, devices)
    monkeypatch.setattr(Cluster, "oom_kills", lambda self: [0, 0])
    with pytest.raises(RuntimeError, match="exit -9") as caught:
        cf.run_on_devices(config, devices)
    assert not isinstance(caught.value, cf.DeviceOutOfMemory)


@pytest.mark.skipif(not available, reason=f"device emulation needs root, iproute2 and cgroup v1: {why}")
def test_a_rank_over_its_devices_memory_cap_is_reported_not_hung(tokens, tmp_path):
    config = PipelineConfig(starts=[0, 2], arch="gpt2", tokens=tokens, model=TINY, steps=2, batch=4, n_microbatches=2)
    devices = [EmulatedDevice("roomy", 1.0, 4096, 100), EmulatedDevice("tiny", 1.0, 120, 100)]
    began = time.monotonic()
    with pytest.raises(cf.DeviceOutOfMemory, match=r"tiny \(stage 1, cap 120 MB\)"):
        cf.run_on_devices(config, devices, emulate=True, log_dir=tmp_path)
    assert time.monotonic() - began < 120  # reported at once, not after the launcher's deadline


def test_throughput_and_devices_of():
    assert cf.throughput({"step_seconds": [1.0, 2.0, 3.0]}, 100) == pytest.approx(100)
    kind = DeviceKind(name="phone", cpu_share=0.6, memory_mb=1800, bandwidth_mbit=200.0)
    devs = cf.devices_of(kind, 2, memory_mb=5000)
    assert [d.memory_mb for d in devs] == [5000, 5000] and devs[0].cpu_share <= 0.6


def test_headline_judges_reduction_and_picks_the_backend_target():
    head = {
        "same_as": None,
        "schedule": {"a": 2, "b": 2},
        "single_ms": {"a": 2.0, "b": 2.0},
        "best_single": "a",
        "speedup": 1.5,
        "rounds": {"schedule": [1.0, 1.0, 1.2], "a": [1.5, 1.6, 1.5], "b": [2.0, 2.0, 2.0]},
    }
    common = dict(
        n_devices=3,
        memory_errors=[0.05, -0.2],
        memory_worst="run, stage 1",
        memory_tolerance=0.15,
        fewest_devices=3,
        device_cap_mb=1800,
        loss_max_abs_diff=0.0,
        throughput_ratio=1.2,
        head=head,
        head_predicted_phone=1.1,
        emulated=True,
        machine=machine(),
        profile="tiny",
        scale={"model": "m"},
        cap_hits=[0, 0, 0],
    )
    run = headline(
        single_peak_mb=2000.0, device_peaks_mb=[1000.0, 1080.0, 1040.0], head_cuda=False, headline_capped=True, **common
    )
    assert run.get("peak_memory_reduction").ours == pytest.approx(0.46)
    assert run.get("pipeline_loss_max_abs_diff").verdict == "met"
    assert run.get("peak_memory_reduction").verdict == "met" and run.get("peak_memory_reduction").measured
    assert run.get("memory_model_max_error").verdict == "missed"  # |-0.2| > 0.15
    assert run.get("head_schedule_speedup").target.level == 1.0
    cuda = headline(
        single_peak_mb=2000.0, device_peaks_mb=[1200.0, 1000.0, 1000.0], head_cuda=True, headline_capped=True, **common
    )
    assert cuda.get("peak_memory_reduction").verdict == "missed"
    lifted = headline(
        single_peak_mb=2000.0, device_peaks_mb=[1000.0] * 3, head_cuda=False, headline_capped=False, **common
    )
    small = headline(
        single_peak_mb=1500.0, device_peaks_mb=[1000.0] * 3, head_cuda=False, headline_capped=True, **common
    )
    for r, why in ((lifted, "cap lifted"), (small, "fits the cap")):
        assert r.get("peak_memory_reduction").verdict == "n/a" and why in r.get("peak_memory_reduction").reason
    tie = {
        **head,
        "schedule": {"a": 4},
        "same_as": "a",
        "speedup": 1.0,
        "rounds": {**head["rounds"], "schedule": [1.5] * 3},
    }
    tied = headline(
        single_peak_mb=2000.0,
        device_peaks_mb=[1000.0] * 3,
        head_cuda=False,
        headline_capped=True,
        **{**common, "head": tie},
    )
    assert tied.get("head_schedule_speedup").verdict == "n/a" and "a tie" in tied.get("head_schedule_speedup").reason
    assert cuda.get("head_schedule_speedup").target.level == 1.3 and cuda.get("head_schedule_speedup").verdict == "met"
