"""The hybrid condition module and the masked multi-identity processor on a diffusers test-size UNet."""

import pytest
import torch
from diffusers import UNet2DConditionModel

from replab.diffusion.condition import HybridCondition, mix_identities
from replab.diffusion.masked_attention import MaskedIdentityAttnProcessor, region_bias

TOKENS, MODEL_DIM = 2, 8


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    return UNet2DConditionModel(
        block_out_channels=(4, 8),
        layers_per_block=1,
        sample_size=16,
        in_channels=3,
        out_channels=3,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=MODEL_DIM,
        norm_num_groups=2,
        attention_head_dim=2,
    ).eval()


def test_condition_shapes_and_alpha_limits():
    torch.manual_seed(0)
    cond = HybridCondition(clip_dim=6, face_dim=5, model_dim=MODEL_DIM, tokens=TOKENS)
    e_h, e_t, e_f = torch.randn(3, 6), torch.randn(3, 6), torch.randn(3, 5)
    image = cond(e_h, None, e_f)
    assert image.shape == (3, TOKENS, MODEL_DIM)
    torch.testing.assert_close(cond(e_h, e_t, e_f, alpha=1.0), image)  # alpha = 1: the image branch alone
    torch.testing.assert_close(cond(e_h, e_t, e_f, alpha=0.0), cond(None, e_t, e_f))  # alpha = 0: the text branch
    half = cond(e_h, e_t, e_f, alpha=torch.tensor([0.5, 0.5, 0.5]))
    torch.testing.assert_close(half, (image + cond(None, e_t, e_f)) / 2)
    with pytest.raises(ValueError, match="e_h"):
        cond(None, None, e_f)


def test_identity_mixing_betas():
    embeddings = torch.randn(2, 3, 5)
    torch.testing.assert_close(mix_identities(embeddings, [0.0, 1.0, 0.0]), embeddings[:, 1])
    torch.testing.assert_close(mix_identities(embeddings, [1 / 3] * 3), embeddings.mean(dim=1))
    torch.testing.assert_close(
        mix_identities(embeddings, torch.tensor([[1.0, 0, 0], [0, 0, 1.0]])),
        torch.stack([embeddings[0, 0], embeddings[1, 2]]),
    )
    with pytest.raises(ValueError, match="2 betas for 3"):
        mix_identities(embeddings, [0.5, 0.5])


def test_region_bias_allows_only_the_own_group():
    regions = torch.tensor([[[0, 1], [2, 2]]])
    groups = torch.tensor([0, 0, 1, 1, 2, 2])
    bias = region_bias(regions, groups, 4, torch.float32)
    allowed = torch.isfinite(bias[0])
    assert allowed.tolist() == [
        [True, True, False, False, False, False],
        [False, False, True, True, False, False],
        [False, False, False, False, True, True],
        [False, False, False, False, True, True],
    ]
    with pytest.raises(ValueError, match="no condition tokens"):
        region_bias(torch.full((1, 2, 2), 3), groups, 4, torch.float32)


def test_masked_processor_routes_each_region_to_its_identity(unet):
    processors = {name: MaskedIdentityAttnProcessor(keep_probs=True) for name in unet.attn_processors}
    unet.set_attn_processor(dict(processors))  # diffusers pops the entries it installs
    sample = torch.randn(1, 3, 16, 16)
    # Fallback tokens, identity 1's, identity 2's.
    context = torch.randn(1, 3 * TOKENS, MODEL_DIM)
    groups = torch.arange(3).repeat_interleave(TOKENS)
    regions = torch.zeros(1, 16, 16, dtype=torch.long)
    regions[:, :, :8] = 1  # left half: person 1
    regions[:, 8:, 8:] = 2  # bottom right: person 2; top right: nobody
    kwargs = {"identity_regions": regions, "token_groups": groups}
    with torch.no_grad():
        masked = unet(sample, 10, context, cross_attention_kwargs=kwargs).sample
        plain = unet(sample, 10, context).sample
    assert masked.shape == sample.shape and not torch.allclose(masked, plain)
    cross = [p for name, p in processors.items() if "attn2" in name]
    assert cross
    for processor in cross:
        probs = processor.last_probs  # from the unmasked call: every token visible
        assert (probs > 0).all()
    with torch.no_grad():
        unet(sample, 10, context, cross_attention_kwargs=kwargs)
    for processor in cross:
        probs = processor.last_probs
        side = int(probs.shape[1] ** 0.5)
        grid = torch.nn.functional.interpolate(regions[:, None].float(), size=(side, side))[0, 0].long().flatten()
        for region in (0, 1, 2):
            rows = probs[:, grid == region]  # (batch x heads, queries in this region, keys)
            assert rows.numel()
            torch.testing.assert_close(rows[..., groups == region].sum(-1), torch.ones(rows.shape[:2]))
            assert (rows[..., groups != region] == 0).all()


def test_masked_processor_without_regions_is_the_default_attention(unet):
    from diffusers.models.attention_processor import AttnProcessor

    sample, context = torch.randn(2, 3, 16, 16), torch.randn(2, 3, MODEL_DIM)
    unet.set_attn_processor(AttnProcessor())
    with torch.no_grad():
        reference = unet(sample, 5, context).sample
        unet.set_attn_processor(MaskedIdentityAttnProcessor())
        ours = unet(sample, 5, context).sample
    torch.testing.assert_close(ours, reference)
