import math

import pytest
import torch

from replab.edge.compression import BITS, compress, decompress
from replab.kernels import triton_runs_on

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
needs_triton = pytest.mark.skipif(
    not triton_runs_on(torch.device(DEVICE)), reason="Triton needs CUDA or TRITON_INTERPRET=1"
)


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("shape", [(1,), (7,), (3, 5), (2, 3, 11), (1001,)])
def test_round_trip_error_and_payload_size(bits, shape):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(bits)) * 5 + 1
    c = compress(x, bits, backend="torch")
    y = decompress(c, backend="torch")
    assert y.shape == x.shape and y.dtype == x.dtype
    assert c.nbytes == math.ceil(x.numel() * bits / 8)
    assert c.step == pytest.approx((float(x.max()) - float(x.min())) / (2**bits - 1))
    assert float((y - x).abs().max()) <= c.step / 2 * (1 + 1e-5) + 1e-6  # round to nearest


def test_extremes_are_exact_and_constants_survive():
    x = torch.tensor([-2.0, 0.3, 5.0])
    y = decompress(compress(x, 2, backend="torch"), backend="torch")
    assert y[0] == -2.0 and y[2] == pytest.approx(5.0)
    const = torch.full((9,), 3.25)
    c = compress(const, 4, backend="torch")
    assert c.step == 0 and torch.equal(decompress(c, backend="torch"), const)


def test_dtype_is_restored_and_bad_input_refused():
    x = torch.randn(10, dtype=torch.float64)
    assert decompress(compress(x, 8)).dtype == torch.float64
    with pytest.raises(ValueError, match="bits must be one of"):
        compress(x, 3)
    with pytest.raises(ValueError, match="NaN or infinity"):
        compress(torch.tensor([1.0, float("nan")]), 4)
    with pytest.raises(ValueError, match="empty"):
        compress(torch.empty(0), 4)


@needs_triton
@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("numel", [1, 5, 1000, 4099, 70_001])
def test_triton_kernels_give_the_reference_bytes(bits, numel):
    x = (torch.randn(numel, generator=torch.Generator().manual_seed(numel)) * 3).to(DEVICE)
    ref, tri = compress(x, bits, backend="torch"), compress(x, bits, backend="triton")
    assert torch.equal(ref.payload, tri.payload)
    # Same codes; the dequantised values may differ in the last bit where the GPU fuses multiply and add.
    scale = float(x.abs().max())
    torch.testing.assert_close(
        decompress(ref, backend="torch"), decompress(tri, backend="triton"), rtol=0, atol=4e-7 * scale
    )
