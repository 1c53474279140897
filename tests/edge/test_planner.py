import numpy as np
import pytest
import torch

from replab.edge.models import tiny_transformer
from replab.edge.partition import InfeasiblePartition
from replab.edge.pipeline import packed_len
from replab.edge.planner import Planner, layer_memory_bytes, link_rates_mbit, wire_bytes


def test_a_link_runs_at_its_slower_end():
    # The emulator shapes each device's egress and the bridge's egress towards it: 50 -> 20 is a 20 Mbit/s link.
    assert link_rates_mbit([100, 50, 20]) == [50, 20]
    assert link_rates_mbit([20, 100, 100]) == [20, 100]


def test_wire_bytes_are_what_crosses():
    assert wire_bytes(1000, None) == 4000
    assert wire_bytes(1000, 4) == 4 * packed_len(1000, 4) == 4 * (125 + 2)


def test_layer_memory_counts_parameters_optimiser_and_saved_activations():
    linear = torch.nn.Linear(8, 16)
    x = torch.randn(4, 8)
    (one,) = layer_memory_bytes([linear], x, in_flight=1)
    (three,) = layer_memory_bytes([linear], x, in_flight=3)
    params = (8 * 16 + 16) * 4
    saved = 4 * 8 * 4  # the input, which the backward needs for the weight gradient
    assert one == 4 * params + saved
    assert three - one == 2 * saved  # activations scale with the micro-batches in flight
    blocks = layer_memory_bytes(
        tiny_transformer(n_blocks=2, d_model=32, n_heads=2, vocab=32, seq_len=16),
        torch.randint(0, 32, (2, 16)),
        in_flight=4,
    )
    assert blocks.shape == (4,) and blocks[1] == blocks[2] > blocks[0]


def _planner(bandwidth=(20, 20, 20), memory=(1e9, 1e9, 1e9), n_layers=8):
    return Planner(4 * 64 * 128, list(bandwidth), 4, np.full(n_layers, 1e6), list(memory))


def test_plans_are_per_micro_batch_and_compression_shrinks_the_links():
    times = np.tile(np.full(8, 0.004), (3, 1)) * np.array([[1.0], [2.0], [4.0]])  # slower devices down the chain
    planner = _planner()
    fp32 = planner.optimal("dp", times, None)
    four = planner.optimal("dp", times, 4)
    one_way = 4 * 64 * 128 * 4 / (20e6 / 8)
    assert fp32.link_s[1] == pytest.approx(2 * one_way)  # activations forward + gradients back, one micro-batch
    assert four.link_s[1] < fp32.link_s[1] / 7
    assert fp32.bottleneck_s == pytest.approx(2 * one_way)  # fp32 at 20 Mbit/s: the links pace the pipeline
    assert four.bottleneck_s < fp32.bottleneck_s
    assert four.step_s == pytest.approx(sum(four.stage_s) + sum(four.link_s) + 3 * four.bottleneck_s)
    even = planner.even("even", times, 4)
    assert even.starts == (0, 3, 5) and four.bottleneck_s <= even.bottleneck_s


def test_memory_caps_move_or_refuse_the_split():
    times = np.ones((3, 8)) * 0.001
    roomy = _planner().optimal("dp", times, 4)
    tight = _planner(memory=(6e6, 1e9, 1e9)).optimal("dp", times, 4)
    assert tight.starts[1] <= 6 and _planner(memory=(6e6, 1e9, 1e9)).fits(tight.starts)[0] <= 6e6
    assert roomy.starts != tight.starts or roomy.starts[1] <= 6
    with pytest.raises(InfeasiblePartition, match="memory"):
        _planner(memory=(2e6, 2e6, 2e6)).optimal("dp", times, 4)


def test_when_a_link_paces_the_pipeline_the_tie_goes_to_the_least_total_time():
    # fp32 at 20 Mbit/s: every cut costs the same transfer, which exceeds any stage's compute. The bottleneck
    # ties across most splits; the first one found put nearly all layers on the slowest device.
    times = np.tile(np.full(8, 0.005), (3, 1)) * np.array([[1.0], [2.0], [4.0]])
    planner = _planner()
    dp, even = planner.optimal("dp", times, None), planner.even("even", times, None)
    assert dp.bottleneck_s == pytest.approx(even.bottleneck_s)
    assert dp.step_s <= even.step_s and dp.starts[1] >= 3  # the fast device takes the most layers
    assert sum(dp.stage_s) == pytest.approx(
        min(sum(planner.fixed("x", (0, a, b), times, None).stage_s) for a in range(1, 7) for b in range(a + 1, 8))
    )
