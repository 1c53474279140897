"""The AccEPT experiments as functions (the notebook calls these; tests call them small)."""

from __future__ import annotations

import numpy as np

from .latency import LatencyPredictor, mape, samples, within
from .partition import evaluate, even_split, partition
from .profiles import DeviceProfile


def split_layers(profile: DeviceProfile, test_fraction: float, seed: int) -> tuple[DeviceProfile, DeviceProfile]:
    """The profile's layers split into train / held-out sets (by layer configuration)."""
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(profile.layers))
    n_test = max(1, int(round(test_fraction * len(idx))))
    test, train = sorted(idx[:n_test]), sorted(idx[n_test:])
    pick = lambda ids: replace_layers(profile, [profile.layers[i] for i in ids])  # noqa: E731
    return pick(train), pick(test)


def replace_layers(profile: DeviceProfile, layers) -> DeviceProfile:
    return profile.model_copy(update={"layers": list(layers)})


def predictor_study(
    known: list[DeviceProfile],
    unseen: DeviceProfile,
    measurements=(0, 5, 10, 20),
    test_fraction: float = 0.3,
    seed: int = 0,
) -> dict:
    """Accuracy on held-out layers of the known devices, and on the unseen device after adapting on
    ``n`` of its layer measurements (evaluated on layers it was not adapted on)."""
    splits = [split_layers(p, test_fraction, seed) for p in known]
    model = LatencyPredictor(random_state=seed).fit([train for train, _ in splits])
    held = {}
    for (_, test), prof in zip(splits, known):
        truth = np.exp(samples(test)[1])
        pred = model.predict_ms(test)
        held[prof.name] = {"mape": mape(pred, truth), "within_10pct": within(pred, truth)}
    adapt_pool, unseen_test = split_layers(unseen, test_fraction, seed + 1)
    truth = np.exp(samples(unseen_test)[1])
    layer_truth = np.asarray([r.forward_ms + r.backward_ms for r in unseen_test.layers])
    curve = []
    for n in measurements:
        m = LatencyPredictor(random_state=seed).fit([train for train, _ in splits])
        m.adapt(adapt_pool, n, seed=seed)
        pred = m.predict_ms(unseen_test)
        layer_pred = pred[0::2] + pred[1::2]  # forward + backward: a layer's share of a training step
        curve.append(
            {
                "measurements": n,
                "mape": mape(pred, truth),
                "within_10pct": within(pred, truth),
                "layer_mape": mape(layer_pred, layer_truth),
                "layer_within_10pct": within(layer_pred, layer_truth),
            }
        )
    # The noise floor of the per-direction figures: the same layers measured on the first known device, scaled by
    # the speed ratio, as a predictor of the unseen device.
    ref = {r.name: r for r in known[0].layers}
    scaled = np.asarray([getattr(ref[r.name], f) for r in unseen_test.layers for f in ("forward_ms", "backward_ms")])
    scaled = scaled * known[0].gflops / unseen.gflops
    floor = {"scaled_reference_within_10pct": within(scaled, truth), "reference": known[0].name}
    return {"held_out": held, "unseen": unseen.name, "unseen_curve": curve, "noise_floor": floor}


def stage_layer_times(
    profiles: list[DeviceProfile], tag: str, n_blocks: int, predictor: LatencyPredictor | None = None
):
    """Per-layer forward+backward ms of the pipeline model (embed, ``n_blocks`` blocks, head) on each device:
    measured (from the profile's records for configuration ``tag``) or predicted."""
    out = []
    for prof in profiles:
        records = {r.name: r for r in prof.layers}
        chain = [records[f"{tag}/embed"]] + [records[f"{tag}/block"]] * n_blocks + [records[f"{tag}/head"]]
        if predictor is None:
            out.append([r.forward_ms + r.backward_ms for r in chain])
        else:
            pred = predictor.predict_ms(prof, chain)
            out.append(list(pred[0::2] + pred[1::2]))
    return np.asarray(out)


def plan(
    measured_ms: np.ndarray,
    predicted_ms: np.ndarray,
    boundary_bytes: float,
    bandwidth_mbit: list[float],
    bits: int | None,
    memory_bytes: list[float] | None = None,
) -> dict:
    """Even split vs the DP split on predicted times; stage times of both, predicted and measured."""
    n_dev, n_layers = measured_ms.shape
    bw = [b * 1e6 / 8 for b in bandwidth_mbit[: n_dev - 1]]
    wire = boundary_bytes * (bits / 32 if bits else 1.0)
    out_b = np.full(n_layers, wire)
    mem = memory_bytes or [float("inf")] * n_dev
    dp = partition(predicted_ms / 1e3, np.zeros(n_layers), out_b, mem, bw)
    even = even_split(n_layers, n_dev)
    out_fp32 = np.full(n_layers, boundary_bytes)
    return {
        "even_starts": even,
        "dp_starts": list(dp.starts),
        "even_measured": evaluate(even, measured_ms / 1e3, out_fp32, bw),
        "dp_predicted": evaluate(dp.starts, predicted_ms / 1e3, out_b, bw),
        "dp_measured": evaluate(dp.starts, measured_ms / 1e3, out_b, bw),
    }


def time_to_loss(losses: list[float], step_seconds: list[float], target: float, window: int = 3) -> float:
    """Wall time at which the moving-average loss first reaches ``target`` (inf if never)."""
    smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
    hit = np.flatnonzero(smooth <= target)
    return float(step_seconds[hit[0] + window - 1]) if hit.size else float("inf")


def speedups_to_loss(baseline: list[dict], accept: list[dict], target: float, window: int = 3) -> list[dict]:
    """Per round, baseline time to ``target`` over AccEPT's. A round where AccEPT never reaches it scores 0 (a
    miss); where only the baseline never does, its whole run time stands in for its time to loss, so the ratio
    is a lower bound (``bound`` True)."""
    rows = []
    for b, a in zip(baseline, accept, strict=True):
        t_b = time_to_loss(b["losses"], b["step_seconds"], target, window)
        t_a = time_to_loss(a["losses"], a["step_seconds"], target, window)
        if not np.isfinite(t_a):
            rows.append({"baseline_s": t_b, "accept_s": t_a, "speedup": 0.0, "bound": False})
        elif not np.isfinite(t_b):
            rows.append({"baseline_s": t_b, "accept_s": t_a, "speedup": b["step_seconds"][-1] / t_a, "bound": True})
        else:
            rows.append({"baseline_s": t_b, "accept_s": t_a, "speedup": t_b / t_a, "bound": False})
    return rows


def compression_table(numel: int = 1_000_000, reps: int = 5, seed: int = 0) -> list[dict]:
    """Ratio, reconstruction error and pack/unpack throughput against a memory copy, per bit width, on the
    CPU torch path: copy, pack and unpack timed ``reps`` times, interleaved (:func:`replab.measure.repeat`);
    medians, and the spread of the per-round fraction of a copy."""
    import torch

    from ..measure import Spread, repeat
    from .compression import BITS, compress, decompress

    x = torch.randn(numel, generator=torch.Generator().manual_seed(seed))
    dst = torch.empty_like(x)  # a buffer already touched: the copy, not page faults
    rows = []
    for bits in BITS:
        c = compress(x, bits, backend="torch")
        y = decompress(c, backend="torch")
        runs = repeat(
            {
                "copy": lambda: dst.copy_(x),
                "pack": lambda bits=bits: compress(x, bits, backend="torch"),
                "unpack": lambda c=c: decompress(c, backend="torch"),
            },
            reps,
            warmup=1,
        )
        s = runs.spreads
        per_round = [cp / (pk + up) for cp, pk, up in zip(s["copy"].values, s["pack"].values, s["unpack"].values)]
        fraction = Spread.of(per_round)
        rows.append(
            {
                "bits": bits,
                "ratio": x.numel() * 4 / c.nbytes,
                "max_abs_error_over_step": float((y - x).abs().max()) / c.step,
                "rmse": float(((y - x) ** 2).mean().sqrt()),
                "pack_ms": 1e3 * s["pack"].median,
                "unpack_ms": 1e3 * s["unpack"].median,
                "copy_ms": 1e3 * s["copy"].median,
                "fraction_of_copy": fraction.median,
                "fraction_low": fraction.low,
                "fraction_high": fraction.high,
                "fraction_values": fraction.values,
                "repeats": reps,
            }
        )
    return rows


def run_pipeline(config, devices, emulate: bool = True) -> dict:
    """Train with ``config`` on ``devices`` (one EmulatedDevice per stage) inside an emulated cluster when
    possible; returns launch()'s result plus whether it was emulated."""
    from .emulate import EmulatedCluster
    from .pipeline import launch

    with EmulatedCluster(devices) if emulate else _Loopback() as cluster:
        n = len(devices)
        result = launch(
            config,
            commands={i: cluster.command(i) for i in range(n)},
            master_addr=cluster.master_addr,
            env_extra={i: cluster.env(i) for i in range(n)},
        )
        result["emulated"] = bool(getattr(cluster, "emulated", False))
    return result


class _Loopback:
    emulated = False
    master_addr = "127.0.0.1"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def command(self, i):
        return []

    def env(self, i):
        return {}
