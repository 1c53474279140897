import itertools
import os

import pytest
import torch

from replab.edge.head_exec import BackendSpec, HeadExecutor, attention, compare_with_single
from replab.edge.heads import (
    HeadBackend,
    HeadProfile,
    best_single,
    compatible_sets,
    published_head_profile,
    schedule_heads,
)


def backend(name, compute, copy=None, cores=(0,), device="cpu", dispatch=0.0):
    copy = copy or [0.0] * len(compute)
    return HeadBackend(
        name=name, device=device, cores=list(cores), compute_ms=compute, copy_ms=copy, dispatch_ms=dispatch
    )


def profile(*backends, n_heads=None):
    n = n_heads or len(backends[0].compute_ms) - 1
    return HeadProfile(
        name="t", kind="measured", source="test", n_heads=n, head_dim=8, batch=1, seq_len=4, backends=list(backends)
    )


def brute_force(prof):
    """Every assignment of counts to every compatible set of backends."""
    best = float("inf")
    for combo in compatible_sets(prof.backends):
        for counts in itertools.product(range(prof.n_heads + 1), repeat=len(combo)):
            if sum(counts) == prof.n_heads:
                best = min(best, max(b.cost_ms(h) for b, h in zip(combo, counts)))
    return best


def random_table(g, n, scale):
    steps = torch.rand(n, generator=g) * scale
    return [0.0] + torch.cumsum(steps, 0).tolist()


@pytest.mark.parametrize("seed", range(25))
def test_schedule_matches_brute_force_on_small_tables(seed):
    g = torch.Generator().manual_seed(seed)
    n = int(torch.randint(1, 7, (1,), generator=g))
    cores = [(0,), (1,), (0, 1), (2,)]
    backends = [
        backend(
            f"b{i}",
            random_table(g, n, float(torch.rand(1, generator=g)) * 4 + 0.1),
            random_table(g, n, 0.5),
            cores=cores[i],
            device="cuda:0" if i == 3 else "cpu",
            dispatch=float(torch.rand(1, generator=g)),
        )
        for i in range(4)
    ]
    prof = profile(*backends, n_heads=n)
    sched = schedule_heads(prof)
    assert sum(sched.heads.values()) == n
    assert sched.predicted_ms == pytest.approx(brute_force(prof))
    used = [prof.backend(name) for name in sched.heads]
    assert not any(a.conflicts(b) for a, b in itertools.combinations(used, 2))
    assert sched.predicted_ms <= best_single(prof).predicted_ms + 1e-12  # never loses in its own model


def test_conflicting_backends_never_share_a_schedule():
    fast_pair = [backend("core0", [0, 1, 2, 3, 4], cores=(0,)), backend("core1", [0, 1, 2, 3, 4], cores=(1,))]
    both = backend("all", [0, 0.9, 1.8, 2.7, 3.6], cores=(0, 1))
    sched = schedule_heads(profile(*fast_pair, both))
    assert sched.heads == {"core0": 2, "core1": 2} and sched.predicted_ms == 2
    slow_split = schedule_heads(profile(*fast_pair, backend("all", [0, 0.4, 0.8, 1.2, 1.6], cores=(0, 1))))
    assert slow_split.heads == {"all": 4}


def test_copy_cost_counts_on_the_critical_path():
    gpu = backend("gpu", [0, 0.1, 0.2, 0.3, 0.4], copy=[0, 1, 2, 3, 4], cores=(1,), device="cuda:0")
    cpu = backend("cpu", [0, 1, 2, 3, 4], cores=(0,))
    sched = schedule_heads(profile(gpu, cpu))
    assert sched.heads == {"gpu": 2, "cpu": 2} and sched.predicted_ms == pytest.approx(2.2)
    assert sched.slices() == {"gpu": (0, 2), "cpu": (2, 4)}


def test_profile_validation_and_yaml_round_trip(tmp_path):
    with pytest.raises(ValueError, match="needs 4 non-negative entries"):
        HeadProfile.model_validate(profile(backend("a", [0, 1, 2])).model_dump() | {"n_heads": 3})
    with pytest.raises(ValueError, match="unique"):
        profile(backend("a", [0, 1]), backend("a", [0, 2]))
    prof = published_head_profile(
        "phone",
        "published figures (test)",
        n_heads=4,
        head_dim=8,
        batch=1,
        seq_len=16,
        backends={"cpu": {"gflops": 10, "cores": [0]}, "gpu": {"gflops": 40, "copy_gbs": 5, "device": "gpu:0"}},
    )
    assert prof.kind == "published" and prof.backend("cpu").copy_ms == [0.0] * 5
    assert HeadProfile.load(prof.save(tmp_path / "p.yaml")) == prof
    with pytest.raises(KeyError, match="no backend 'npu'"):
        prof.backend("npu")


def cores_here():
    return sorted(os.sched_getaffinity(0))


def test_executor_split_equals_unsplit_attention():
    c = cores_here()
    specs = [BackendSpec("a", (c[0],)), BackendSpec("b", (c[-1],))]
    with HeadExecutor(specs, n_heads=5, batch=2, seq_len=16, head_dim=8, seed=3) as ex:
        ref = ex.reference()
        # the layout: heads are a batch dimension, each head attends causally over its own sequence
        q, k, v = ex.q[1, 0], ex.k[1, 0], ex.v[1, 0]
        w = torch.softmax((q @ k.T) / 8**0.5 + torch.triu(torch.full((16, 16), float("-inf")), 1), -1)
        torch.testing.assert_close(ref[1, 0], w @ v)
        assert ex.check({"a": 2, "b": 3}, ref) == 0.0
        assert ex.check({"a": 5, "b": 0}, ref) == 0.0
        prof = ex.measure_profile("here", "test", repeats=1)
        assert [len(b.compute_ms) for b in prof.backends] == [6, 6]
        result = compare_with_single(ex, schedule_heads(prof), rounds=1, iters=1)
        assert result["max_abs_deviation"] == 0.0 and result["speedup"] > 0
        with pytest.raises(ValueError, match="all 5 heads once"):
            ex.run({"a": 2})
        with pytest.raises(ValueError, match="not started"):
            ex.run({"gpu": 5})


def test_backend_spec_refuses_what_is_not_here():
    with pytest.raises(ValueError, match="not all available"):
        BackendSpec("x", (10_000,))
    with pytest.raises(ValueError, match="at least one core"):
        BackendSpec("x", ())
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="not available here"):
            BackendSpec("x", (cores_here()[0],), "cuda:0")


def test_attention_is_causal():
    q = k = v = torch.randn(1, 1, 4, 2)
    out = attention(q, k, v)
    torch.testing.assert_close(out[0, 0, 0], v[0, 0, 0])  # the first token sees only itself
