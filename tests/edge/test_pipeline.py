import pytest
import torch

from replab.edge.pipeline import PipelineConfig, _DecodeFn, _EncodeFn, launch, packed_len, single_process_losses

TINY = dict(n_blocks=3, d_model=32, n_heads=2, vocab=32, seq_len=16)


def config(**kw):
    return PipelineConfig(**{"starts": [0, 3], "steps": 4, "model": TINY, "batch": 8, "n_microbatches": 2, **kw})


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
def test_two_process_gloo_pipeline_matches_single_process(schedule):
    cfg = config(schedule=schedule)
    result = launch(cfg, timeout=300)
    assert result["losses"] == pytest.approx(single_process_losses(cfg), rel=1e-5)


def test_three_stages_with_4bit_compression_stay_close_and_learn():
    cfg = config(starts=[0, 2, 4], bits=4, steps=6)
    losses = launch(cfg, timeout=300)["losses"]
    reference = single_process_losses(cfg)
    assert losses[-1] < losses[0]
    assert max(abs(a - b) / b for a, b in zip(losses, reference)) < 0.05


def test_wire_format_round_trips_activations_and_gradients():
    x = torch.randn(3, 5, 7, requires_grad=True)
    wire = _EncodeFn.apply(x, 4)
    assert wire.shape == (packed_len(105, 4),) and wire.dtype == torch.float32
    back = _DecodeFn.apply(wire, (3, 5, 7), 4)
    step = float(x.detach().max() - x.detach().min()) / 15
    assert (back - x).abs().max() <= step / 2 * (1 + 1e-5)
    back.sum().backward()
    assert torch.allclose(x.grad, torch.ones_like(x))  # a constant gradient survives exactly
    nan_wire = _EncodeFn.apply(torch.full((1, 4), float("nan")), 8)
    assert torch.isnan(_DecodeFn.apply(nan_wire, (1, 4), 8)).all()  # divergence stays visible


def test_stage_count_must_match_processes():
    from replab.edge.pipeline import run_rank

    with pytest.raises(ValueError, match="3 processes for 2 stages"):
        run_rank(0, 3, config())


def test_a_failing_rank_stops_the_others_at_once():
    import time

    start = time.monotonic()
    # Rank 1 exits at once; rank 0 would wait in gloo's rendezvous until the timeout without the poll.
    with pytest.raises(RuntimeError, match=r"rank 1 \(exit 3\):\nbroken"):
        launch(config(), commands={1: ["sh", "-c", "echo broken >&2; exit 3", "rank"]}, timeout=120)
    assert time.monotonic() - start < 60


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"starts": [0, 3, 2]}, "strictly increase"),
        ({"starts": [1, 3]}, "begin at 0"),
        ({"starts": [0, 5]}, "no layer for the last stage"),
        ({"batch": 9}, "multiple of n_microbatches"),
        ({"bits": 3}, "bits must be one of"),
        ({"schedule": "zigzag"}, "schedule must be one of"),
        ({"model": {**TINY, "depth": 2}}, "unknown model settings"),
    ],
)
def test_bad_pipeline_configs_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        config(**change)


def test_a_stage_builds_only_its_layers_with_the_whole_models_weights():
    from replab.edge.models import tiny_transformer

    whole = tiny_transformer(seed=3, **TINY)
    part = tiny_transformer(seed=3, only=range(2, 4), **TINY)
    assert part[0] is None and part[1] is None and part[4] is None
    for i in (2, 3):
        for a, b in zip(whole[i].parameters(), part[i].parameters()):
            assert torch.equal(a, b)


def test_ranks_report_their_layers_stage_times_and_memory_and_keep_logs(tmp_path):
    cfg = config(starts=[0, 2, 4], steps=3)
    result = launch(cfg, timeout=300, log_dir=tmp_path)
    assert [r["layers"] for r in result["ranks"]] == [[0, 1], [2, 3], [4]]
    for r in result["ranks"]:
        # Every micro-batch of every step timed, forward and backward (plus the schedule's first pass).
        assert len(r["backward_s"]) >= cfg.steps * cfg.n_microbatches and min(r["backward_s"]) > 0
        assert r["peak_rss_mb"] >= r["rss_start_mb"] > 0
    assert "step 3/3" in (tmp_path / "rank2.log").read_text()
    assert sorted(p.name for p in tmp_path.glob("rank*.log")) == ["rank0.log", "rank1.log", "rank2.log"]


def test_a_chatty_rank_cannot_block_the_launcher():
    import time

    # 200 KB on stderr before the rank starts: more than a pipe holds. With pipes read one after another this
    # deadlocked until the timeout.
    noisy = ["sh", "-c", 'head -c 200000 /dev/zero | tr "\\0" x >&2; echo >&2; exec "$@"', "rank"]
    start = time.monotonic()
    result = launch(config(), commands={0: noisy}, timeout=120)
    assert len(result["losses"]) == 4 and time.monotonic() - start < 100
