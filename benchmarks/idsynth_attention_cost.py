"""What attention at 16x16 would cost FaceStudio's laptop generator: seconds per training step (forward and
backward of diffusers' UNet2DConditionModel, batch ``generator_batch``, on the pixel-unshuffled 16x16 input) for

- ``laptop``: the stage's UNet (no attention at 16x16, cross-attention at 8x8 and in the mid block);
- ``16x16 cross``: the first level a CrossAttnDownBlock2D / CrossAttnUpBlock2D with cross-attention only
  (``only_cross_attention``: the block's self-attention also attends to the condition tokens);
- ``16x16 self+cross``: the same with the usual self-attention over the 256 positions as well.

Arms interleaved (replab.measure.repeat), median and range; the ratio is against ``laptop`` in the same run. The
stage's budget: 60 minutes on 2 cores, of which the generator took 24 at 2,500 steps.

    python benchmarks/idsynth_attention_cost.py [--repeats 5] [--steps 3]
"""

from __future__ import annotations

import argparse

import torch
from diffusers import UNet2DConditionModel

from replab.diffusion.generator import Generator
from replab.diffusion.training import GENERATORS
from replab.measure import machine, repeat


def unet(first_level: str | None) -> UNet2DConditionModel:
    """The stage's UNet (its config, from the generator itself), with the first level's blocks swapped."""
    config = dict(Generator(GENERATORS["laptop"]).unet.config)
    config.pop("_use_default_values", None)  # else from_config resets the keys set below to their defaults
    if first_level is not None:
        config["down_block_types"] = ("CrossAttnDownBlock2D", *config["down_block_types"][1:])
        config["up_block_types"] = (*config["up_block_types"][:-1], "CrossAttnUpBlock2D")
        config["only_cross_attention"] = (first_level == "cross", False)
    return UNet2DConditionModel.from_config(config)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=3, help="training steps per timed call")
    ap.add_argument("--batch", type=int, default=32, help="the laptop profile's generator_batch")
    args = ap.parse_args()
    c = GENERATORS["laptop"]
    g = torch.Generator().manual_seed(0)
    size, channels = c.image_size // c.unshuffle, 3 * c.unshuffle**2
    x = torch.randn(args.batch, channels, size, size, generator=g)
    context = torch.randn(args.batch, c.tokens, c.model_dim, generator=g)
    labels = torch.randn(args.batch, c.face_dim, generator=g)
    t = torch.randint(0, c.train_timesteps, (args.batch,), generator=g)
    models = {"laptop": unet(None), "16x16 cross": unet("cross"), "16x16 self+cross": unet("self+cross")}

    def steps(model):
        def run():
            for _ in range(args.steps):
                model.zero_grad(set_to_none=True)
                model(x, t, encoder_hidden_states=context, class_labels=labels).sample.square().mean().backward()

        return run

    timed = repeat({k: steps(m) for k, m in models.items()}, args.repeats, warmup=1)
    print(f"# FaceStudio generator: seconds per training step, batch {args.batch} -- {machine().describe()}")
    print(f"# {args.repeats} interleaved repeats of {args.steps} steps; median (range)\n")
    print("| UNet | parameters (M) | s / step | ratio to laptop, per round |\n|---|---:|---|---|")
    for name, m in models.items():
        s, r = timed.spreads[name], timed.ratio(name, "laptop")
        params = sum(p.numel() for p in m.parameters()) / 1e6
        print(
            f"| {name} | {params:.2f} | {s.median / args.steps:.3f} ({s.low / args.steps:.3f}–"
            f"{s.high / args.steps:.3f}) | {r.median:.2f} ({r.low:.2f}–{r.high:.2f}) |"
        )


if __name__ == "__main__":
    main()
