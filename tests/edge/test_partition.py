import itertools

import numpy as np
import pytest

from replab.edge.partition import InfeasiblePartition, evaluate, even_split, partition


def brute_force(t, mem_l, out_b, mem_d, bw, factor=2.0):
    n_dev, n_layers = t.shape
    best = None
    for cut in itertools.combinations(range(1, n_layers), n_dev - 1):
        starts = (0, *cut)
        ends = (*cut, n_layers)
        if any(mem_l[a:b].sum() > mem_d[s] for s, (a, b) in enumerate(zip(starts, ends))):
            continue
        value = evaluate(starts, t, out_b, bw, factor).bottleneck
        if best is None or value < best:
            best = value
    return best


@pytest.mark.parametrize("seed", range(40))
def test_dynamic_program_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n_dev, n_layers = rng.integers(1, 4), rng.integers(3, 9)
    speed = rng.uniform(0.3, 3.0, n_dev)
    t = rng.uniform(0.1, 1.0, n_layers)[None, :] / speed[:, None]
    mem_l = rng.uniform(1, 10, n_layers)
    mem_d = rng.uniform(0.3, 1.0, n_dev) * mem_l.sum()
    out_b = rng.uniform(0, 5, n_layers)
    bw = rng.uniform(1, 20, n_dev - 1)
    expected = brute_force(t, mem_l, out_b, mem_d, bw)
    if expected is None:
        with pytest.raises(InfeasiblePartition):
            partition(t, mem_l, out_b, mem_d, bw)
        return
    got = partition(t, mem_l, out_b, mem_d, bw)
    assert got.bottleneck == pytest.approx(expected)
    assert len(got.starts) == n_dev and got.starts[0] == 0 and list(got.starts) == sorted(set(got.starts))
    for s, r in enumerate(got.ranges(n_layers)):
        assert mem_l[list(r)].sum() <= mem_d[s] + 1e-9


def test_faster_device_gets_more_layers_and_beats_the_even_split():
    t = np.ones((2, 12)) * np.array([[1.0], [3.0]])  # device 1 is 3x slower
    p = partition(t, np.ones(12), np.zeros(12), [100, 100], [1e9])
    assert p.starts == (0, 9)
    assert p.bottleneck < evaluate(even_split(12, 2), t, np.zeros(12), [1e9]).bottleneck


def test_memory_infeasible_partitions_are_refused_with_a_reason():
    with pytest.raises(InfeasiblePartition, match="cannot hold even the largest layer"):
        partition(np.ones((2, 4)), [1, 1, 5, 1], np.zeros(4), [4, 2], [1e6])
    with pytest.raises(InfeasiblePartition, match="total needed 8"):
        partition(np.ones((2, 4)), [2, 2, 2, 2], np.zeros(4), [3, 3], [1e6])
    with pytest.raises(ValueError, match="cannot fill"):
        partition(np.ones((3, 2)), [1, 1], [0, 0], [9, 9, 9], [1, 1])


def test_slow_links_move_the_cut_to_a_small_boundary():
    t = np.ones((2, 6))
    out_b = np.array([100.0, 100, 1, 100, 100, 100])  # a narrow layer output after layer 2
    p = partition(t, np.ones(6), out_b, [10, 10], [10.0])
    assert p.starts == (0, 3)
