"""The fused C codec (replab.kernels.cpu_codec) against the torch reference: the same bytes and bit-identical
values, and the same bytes as the Triton kernel."""

import logging

import pytest
import torch

from replab.edge import compression
from replab.edge.compression import BITS, compress, decompress, pack_reference, unpack_reference
from replab.kernels import cpu_codec, triton_runs_on

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
needs_triton = pytest.mark.skipif(
    not triton_runs_on(torch.device(DEVICE)),
    reason="Triton needs CUDA or TRITON_INTERPRET=1 (tests/conftest.py sets it)",
)
LENGTHS = [1, 7, 1000, 1_000_003]


@pytest.fixture(scope="module", autouse=True)
def built():
    """`make test` builds the codec first; a bare pytest builds it here (skipped without a C compiler)."""
    if not cpu_codec.available():
        try:
            cpu_codec.build()
        except cpu_codec.CodecUnavailable as e:
            pytest.skip(str(e))
    assert cpu_codec.available()


def normal(numel: int, seed: int = 0, scale: float = 3.0) -> torch.Tensor:
    return torch.randn(numel, generator=torch.Generator().manual_seed(seed)) * scale + 0.25


def assert_same_as_reference(x: torch.Tensor, bits: int, minimum: float, step: float) -> torch.Tensor:
    got = cpu_codec.pack(x, bits, minimum, step)
    want = pack_reference(x, bits, minimum, step)
    assert got.dtype == torch.uint8 and torch.equal(got, want)
    values = cpu_codec.unpack(got, bits, minimum, step, x.numel())
    assert values.dtype == torch.float32 and torch.equal(values, unpack_reference(want, bits, minimum, step, x.numel()))
    # bit-identical, not just equal (torch.equal would let -0.0 == 0.0 through)
    assert torch.equal(
        values.view(torch.int32), unpack_reference(want, bits, minimum, step, x.numel()).view(torch.int32)
    )
    return got


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("numel", LENGTHS)
def test_range_pack_unpack_are_the_reference_bit_for_bit(bits, numel):
    x = normal(numel, seed=numel + bits)
    lo, hi, finite = cpu_codec.value_range(x)
    assert finite and (lo, hi) == (float(x.min()), float(x.max()))
    assert_same_as_reference(x, bits, lo, (hi - lo) / (2**bits - 1))
    # and through the public API: same metadata, bytes and decompressed values as the torch backend
    c, ref = compress(x, bits, backend="c"), compress(x, bits, backend="torch")
    assert (c.minimum, c.step) == (ref.minimum, ref.step) and torch.equal(c.payload, ref.payload)
    assert torch.equal(decompress(c, backend="c"), decompress(ref, backend="torch"))


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("numel", LENGTHS)
def test_constant_tensors(bits, numel):
    x = torch.full((numel,), -1.75)
    c = compress(x, bits, backend="c")
    assert c.step == 0 and not c.payload.any()
    assert torch.equal(c.payload, compress(x, bits, backend="torch").payload)
    assert torch.equal(decompress(c, backend="c"), x)


@pytest.mark.parametrize("bits", BITS)
def test_exact_extremes_and_ties(bits):
    levels = 2**bits - 1
    lo, hi = -2.0, 5.0
    step = (hi - lo) / levels
    # the extremes, every level, and every half-way point between levels (round-half-up ties), in float32
    grid = torch.tensor([lo + k * step / 2 for k in range(2 * levels + 1)], dtype=torch.float32)
    x = torch.cat([grid, grid.flip(0), normal(513, seed=bits).clamp(lo, hi)])
    x[0], x[-1] = lo, hi
    assert cpu_codec.value_range(x) == (lo, hi, True)
    payload = assert_same_as_reference(x, bits, lo, step)
    values = cpu_codec.unpack(payload, bits, lo, step, x.numel())
    assert values[0] == lo and values[-1] == pytest.approx(hi)


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize(("minimum", "step"), [(0.0, 0.01), (1.0, 0.5), (-0.5, 1e-9), (10.0, 3.0), (0.0, 1e30)])
def test_clamping_matches_the_reference_for_any_minimum_and_step(bits, minimum, step):
    # values below the minimum, past the top level, far past it (scaled beyond 2^31), and around zero
    x = torch.cat([normal(1001, seed=3, scale=100.0), torch.tensor([-0.0, 0.0, -3e38, 3e38, 1e-30, -1e-30])])
    assert_same_as_reference(x, bits, minimum, step)


def test_value_range_signs_and_non_finite_values():
    for values in ([-3.0, -1.0, -2.0], [2.0, 0.5, 9.0], [-0.0, 0.0, 1.0], [-1.0, -0.0], [7.5]):
        x = torch.tensor(values)
        assert cpu_codec.value_range(x) == (float(x.min()), float(x.max()), True)
    for bad in (float("nan"), float("inf"), float("-inf")):
        for where in (0, 5, 16, 1000, 1022):  # first, inside a vector, at lane boundaries, in the tail
            x = normal(1023, seed=where)
            x[where] = bad
            assert not cpu_codec.value_range(x)[2]
            with pytest.raises(ValueError, match="NaN or infinity"):
                compress(x, 4, backend="c")
            with pytest.raises(ValueError, match="NaN or infinity"):
                compress(x, 4)  # auto: the C kernel on CPU
    with pytest.raises(ValueError, match="empty"):
        cpu_codec.value_range(torch.empty(0))


def test_a_large_output_advised_huge_pages_is_still_the_reference():
    numel = (cpu_codec._ADVISE_FROM // 4) + 12_345  # past the size where unpack advises huge pages
    x = normal(numel, seed=5)
    lo, hi, _ = cpu_codec.value_range(x)
    assert_same_as_reference(x, 8, lo, (hi - lo) / 255)


def test_bad_arguments_are_refused():
    x = normal(10)
    with pytest.raises(ValueError, match="float32"):
        cpu_codec.pack(x.double(), 4, 0.0, 1.0)
    with pytest.raises(ValueError, match="float32"):
        cpu_codec.value_range(torch.randn(4, 4).t())
    with pytest.raises(ValueError, match="bits must be one of"):
        cpu_codec.pack(x, 3, 0.0, 1.0)
    with pytest.raises(ValueError, match="fewer than"):
        cpu_codec.unpack(torch.zeros(2, dtype=torch.uint8), 4, 0.0, 1.0, 5)


@needs_triton
@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("numel", [1, 7, 1000, 70_001])
def test_triton_kernel_gives_the_c_kernels_bytes(bits, numel):
    x = normal(numel, seed=7 * numel)
    c = compress(x, bits, backend="c")
    tri = compress(x.to(DEVICE), bits, backend="triton")
    assert (tri.minimum, tri.step) == (c.minimum, c.step)
    assert torch.equal(tri.payload.cpu(), c.payload)


def test_auto_picks_the_c_kernel_on_cpu():
    assert compression.resolve_backend("auto", torch.zeros(3)) == "c"
    assert compression.resolve_backend("torch", torch.zeros(3)) == "torch"
    with pytest.raises(ValueError, match="backend must be one of"):
        compression.resolve_backend("numpy", torch.zeros(3))


def test_without_the_build_auto_falls_back_once_and_forced_c_says_why(monkeypatch, tmp_path, caplog):
    monkeypatch.setattr(cpu_codec, "_lib", None)
    monkeypatch.setattr(cpu_codec, "library_path", lambda: tmp_path / "_codec-missing.so")
    monkeypatch.setattr(compression, "_warned_no_c", False)
    assert not cpu_codec.available()
    x = normal(100)
    with caplog.at_level(logging.WARNING, logger="replab.edge.compression"):
        for _ in range(3):
            c = compress(x, 4)
            assert torch.equal(c.payload, compress(x, 4, backend="torch").payload)
            decompress(c)
    assert [r.getMessage() for r in caplog.records].count(caplog.records[0].getMessage()) == 1
    assert "make kernels" in caplog.records[0].getMessage()
    with pytest.raises(RuntimeError, match="backend 'c' is not available.*make kernels"):
        compress(x, 4, backend="c")


def test_build_without_a_compiler_says_so(monkeypatch, tmp_path):
    monkeypatch.setattr(cpu_codec, "_lib", None)
    monkeypatch.setattr(cpu_codec, "library_path", lambda: tmp_path / "_codec-missing.so")
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert cpu_codec.compiler() is None
    with pytest.raises(cpu_codec.CodecUnavailable, match="no C compiler"):
        cpu_codec.build()
    assert not cpu_codec.available()
    assert cpu_codec.main(["build", "--optional"]) == 0
    assert cpu_codec.main(["build"]) == 1
