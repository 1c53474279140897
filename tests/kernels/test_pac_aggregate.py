import os

import pytest
import torch

from replab.clustering.online import OnlinePAC, info_nce
from replab.kernels import triton_runs_on
from replab.kernels.pac_aggregate import pac_target, pac_target_reference

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
needs_triton = pytest.mark.skipif(
    not triton_runs_on(torch.device(DEVICE)),
    reason="Triton needs CUDA or TRITON_INTERPRET=1 (tests/conftest.py sets it)",
)


@needs_triton
@pytest.mark.parametrize(("batch", "dim", "k"), [(37, 20, 10), (64, 128, 3), (100, 7, 20), (16, 16, 2)])
@pytest.mark.parametrize("m", [1.03, 1.5])
def test_triton_kernel_matches_torch_reference(batch, dim, k, m):
    g = torch.Generator().manual_seed(batch * k)
    h = torch.randn(batch, dim, generator=g).to(DEVICE)
    q = torch.softmax(torch.randn(batch, k, generator=g), 1).to(DEVICE)
    got = pac_target(h, q, m, backend="triton")
    want = pac_target_reference(h, q, m)
    torch.testing.assert_close(got, want, atol=5e-5, rtol=1e-4)
    torch.testing.assert_close(got.sum(1), torch.ones(batch, device=DEVICE))


@needs_triton
@pytest.mark.parametrize("splits", [1, 2, 3])
def test_column_slices_add_up(splits):
    from replab.kernels.pac_aggregate import _pac_target_triton

    h, q = torch.randn(70, 24).to(DEVICE), torch.softmax(torch.randn(70, 5), 1).to(DEVICE)
    got = _pac_target_triton(h, q, 1.1, block_m=16, block_n=16, splits=splits)
    torch.testing.assert_close(got, pac_target_reference(h, q, 1.1), atol=5e-5, rtol=1e-4)


def test_reference_is_the_paper_formula_where_finite():
    h = torch.randn(12, 5, dtype=torch.float64)
    q = torch.softmax(torch.randn(12, 3, dtype=torch.float64), 1)
    m = 1.5
    hn = h / h.norm(dim=1, keepdim=True)
    d = 1 - hn @ hn.T
    d.fill_diagonal_(0)
    g = d @ q
    direct = g ** (-1 / (m - 1))
    direct = direct / direct.sum(1, keepdim=True)
    torch.testing.assert_close(pac_target_reference(h, q, m).double(), direct, atol=1e-6, rtol=1e-5)


def test_auto_backend_is_torch_on_cpu_and_inputs_are_checked():
    h, q = torch.randn(8, 4), torch.softmax(torch.randn(8, 3), 1)
    torch.testing.assert_close(pac_target(h, q, 1.03), pac_target_reference(h, q, 1.03))
    with pytest.raises(ValueError, match="share B"):
        pac_target(h, q[:5], 1.03)
    with pytest.raises(ValueError, match="m must be > 1"):
        pac_target(h, q, 1.0)


def test_online_pac_loss_gradients_flow_to_head_and_projection():
    torch.manual_seed(0)
    backbone = torch.nn.Linear(10, 16)
    head, proj = torch.nn.Linear(16, 4), torch.nn.Linear(16, 8)
    x1, x2 = torch.randn(32, 10), torch.randn(32, 10)
    f1, f2 = backbone(x1), backbone(x2)
    out = OnlinePAC(m=1.03)(f1, head(f1), proj(f1), proj(f2))
    assert set(out) == {"target", "kl", "info_nce", "loss"}
    assert not out["target"].requires_grad
    out["loss"].backward()
    for module in (backbone, head, proj):
        assert module.weight.grad is not None and module.weight.grad.abs().sum() > 0


def test_info_nce_prefers_matching_views():
    z = torch.randn(16, 8)
    assert info_nce(z, z + 0.01 * torch.randn(16, 8)) < info_nce(z, torch.randn(16, 8))
    with pytest.raises(ValueError, match="differ in shape"):
        info_nce(z, z[:4])


def test_interpreter_flag_is_set_for_cpu_runs():
    if not torch.cuda.is_available():
        assert os.environ.get("TRITON_INTERPRET") == "1"
