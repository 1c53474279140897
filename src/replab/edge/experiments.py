"""The AccEPT experiments as functions (the notebook calls these; tests call them small)."""

from __future__ import annotations

import copy
import math

import numpy as np

from .latency import LatencyPredictor, mape, samples, within
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
    draws: int = 5,
) -> dict:
    """Accuracy on held-out layers of the known devices, and on the unseen device after adapting on
    ``n`` of its measurements (one direction of one layer each; evaluated on layers it was not adapted on):
    the mean over ``draws`` random draws of those measurements, with the range."""
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
        scores = []
        for d in range(draws if n > 0 else 1):  # adapting leaves the shared network as it is: copy, then adapt
            m = copy.deepcopy(model).adapt(adapt_pool, n, seed=seed + d)
            pred = m.predict_ms(unseen_test)
            layer_pred = pred[0::2] + pred[1::2]  # forward + backward: a layer's share of a training step
            scores.append(
                {
                    "mape": mape(pred, truth),
                    "within_10pct": within(pred, truth),
                    "layer_mape": mape(layer_pred, layer_truth),
                    "layer_within_10pct": within(layer_pred, layer_truth),
                }
            )
        row = {"measurements": n, "draws": len(scores)}
        for k in scores[0]:
            values = [s[k] for s in scores]
            row[k] = float(np.mean(values))
            row[f"{k}_low"], row[f"{k}_high"] = float(min(values)), float(max(values))
        curve.append(row)
    # Baseline: the same layers' times on the first known device, scaled by the GFLOP/s ratio.
    ref = {r.name: r for r in known[0].layers}
    ratio = known[0].gflops / unseen.gflops
    scaled = np.asarray([getattr(ref[r.name], f) for r in unseen_test.layers for f in ("forward_ms", "backward_ms")])
    scaled = scaled * ratio
    scaling = {"direction": within(scaled, truth), "layer": within(scaled[0::2] + scaled[1::2], layer_truth)}
    configs = list(dict.fromkeys(r.name.split("/")[0] for r in unseen_test.layers))  # in order, once each
    return {
        "held_out": held,
        "unseen": unseen.name,
        "unseen_curve": curve,
        "scaling_rule": {**scaling, "reference": known[0].name},
        "unseen_test_configs": [parse_tag(t) for t in configs],
        "unseen_test_records": [r.name for r in unseen_test.layers],
    }


def parse_tag(tag: str) -> dict:
    """``"d128-s64-b4"`` -> ``{"d_model": 128, "seq_len": 64, "batch": 4}`` (a profiled layer configuration)."""
    d, s, b = tag.split("-")
    return {"d_model": int(d[1:]), "seq_len": int(s[1:]), "batch": int(b[1:])}


def without_config(profile: DeviceProfile, tag: str) -> DeviceProfile:
    """The profile less the records of one layer configuration."""
    return replace_layers(profile, [r for r in profile.layers if not r.name.startswith(tag + "/")])


def planning_predictor(known: list[DeviceProfile], unseen: DeviceProfile, tag: str, n: int, seed: int = 0):
    """The predictor the planner uses: trained on the known devices and adapted on ``n`` measurements of the
    unseen one, with the planned model's configuration ``tag`` removed from both, so every time it gives the
    planner is a prediction, never a record it was fitted on."""
    model = LatencyPredictor(random_state=seed).fit([without_config(p, tag) for p in known])
    return model.adapt(without_config(unseen, tag), n, seed=seed)


def repeat_noise(unseen: DeviceProfile, records: list[str], n_configs: int, repeats: int, emulate: bool = True) -> dict:
    """Repeat noise of layer timing on the unseen device's CPU quota: the layer configurations of the first
    ``n_configs`` held-out ``records`` measured ``repeats`` times in a row, scored on those held-out records
    only (:func:`~replab.edge.latency.repeat_noise_share`); ``emulated``: whether the quota applied."""
    from .latency import repeat_noise_share
    from .profiles import measure_repeats

    tags = list(dict.fromkeys(name.split("/")[0] for name in records))[:n_configs]
    runs, emulated = measure_repeats(unseen.cpu_share, [parse_tag(t) for t in tags], repeats, emulate=emulate)
    return {**repeat_noise_share(runs, names=set(records)), "emulated": emulated, "configs": len(tags)}


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


def compression_table(numel: int = 1_000_000, reps: int = 5, seed: int = 0, backend: str = "auto") -> list[dict]:
    """Ratio, reconstruction error and round-trip throughput against a memory copy, per bit width, on the CPU:
    ``backend`` "auto" is the fused C kernel where it is built, else the torch path (each row's "backend" is
    the one used). Copy (into a preallocated buffer), pack (range + quantise + pack) and unpack are timed
    ``reps`` times, interleaved (:func:`replab.measure.repeat`), all on one torch thread (the C kernel's
    count; the setting is restored after); medians, and the spread of the per-round fraction of a copy."""
    import torch

    from ..measure import Spread, repeat
    from .compression import BITS, compress, decompress, resolve_backend

    x = torch.randn(numel, generator=torch.Generator().manual_seed(seed))
    dst = torch.empty_like(x)  # a buffer already touched: the copy, not page faults
    used = resolve_backend(backend, x)

    def freed(fn):  # repeat() keeps what an arm returns: return nothing, so each output is freed as in use
        def call():
            fn()

        return call

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rows = []
        for bits in BITS:
            c = compress(x, bits, backend=used)
            y = decompress(c, backend=used)
            runs = repeat(
                {
                    "copy": freed(lambda: dst.copy_(x)),
                    "pack": freed(lambda bits=bits: compress(x, bits, backend=used)),
                    "unpack": freed(lambda c=c: decompress(c, backend=used)),
                },
                reps,
                warmup=3,  # the allocator settles (fresh outputs stop page-faulting) after a round or two
            )
            s = runs.spreads
            per_round = [cp / (pk + up) for cp, pk, up in zip(s["copy"].values, s["pack"].values, s["unpack"].values)]
            fraction = Spread.of(per_round)
            rows.append(
                {
                    "bits": bits,
                    "backend": used,
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
    finally:
        torch.set_num_threads(threads)
    return rows


def run_pipeline(config, devices, emulate: bool = True, log_dir=None) -> dict:
    """Train with ``config`` on ``devices`` (one EmulatedDevice per stage) inside an emulated cluster when
    possible; returns launch()'s result plus whether it was emulated. Rank logs go to ``log_dir``."""
    from .emulate import EmulatedCluster
    from .pipeline import launch

    with EmulatedCluster(devices, enabled=emulate) as cluster:
        n = len(devices)
        result = launch(
            config,
            commands={i: cluster.command(i) for i in range(n)},
            master_addr=cluster.master_addr,
            env_extra={i: cluster.env(i) for i in range(n)},
            log_dir=log_dir,
        )
        result["emulated"] = bool(getattr(cluster, "emulated", False))
    return result


def plan_splits(
    profiles: dict[str, DeviceProfile],
    devices: list[dict],
    rates_mbit: list[float],
    known: list[str],
    unseen: str,
    model: dict,
    batch: int,
    n_microbatches: int,
    bits: int,
    runtime_mb: float,
    n_measurements: int,
    seed: int = 0,
) -> dict:
    """Everything the ablation plans with, for one link setting: the layer times (measured from the profiles,
    and predicted by :func:`planning_predictor`), the memory estimate, the :class:`~.planner.Planner` and its
    four splits (even; DP on predicted times with ``bits`` and with fp32; DP on measured times, fp32)."""
    import torch

    from .models import boundary_shape, tiny_transformer
    from .planner import Planner, layer_memory_bytes

    micro = batch // n_microbatches
    tag = f"d{model['d_model']}-s{model['seq_len']}-b{micro}"
    device_profiles = [profiles[d.get("target") or d["profile"]] for d in devices]
    predictor = planning_predictor([profiles[n] for n in known], profiles[unseen], tag, n_measurements, seed)
    measured_s = stage_layer_times(device_profiles, tag, model["n_blocks"]) / 1e3
    predicted_s = stage_layer_times(device_profiles, tag, model["n_blocks"], predictor) / 1e3
    example = torch.randint(0, model["vocab"], (micro, model["seq_len"]))
    layer_mem = layer_memory_bytes(tiny_transformer(seed=seed, **model), example, in_flight=n_microbatches)
    memory = [(d["memory_mb"] - runtime_mb) * 2**20 for d in devices]
    boundary = math.prod(boundary_shape(micro, **model))
    planner = Planner(boundary, rates_mbit, n_microbatches, layer_mem, memory)
    return {
        "planner": planner,
        "measured_s": measured_s,
        "predicted_s": predicted_s,
        "layer_memory": layer_mem,
        "plans": {
            "even": planner.even("even", measured_s, None),
            "dp_predicted": planner.optimal("dp_predicted", predicted_s, bits),
            "dp_predicted_fp32": planner.optimal("dp_predicted_fp32", predicted_s, None),
            "dp_measured_fp32": planner.optimal("dp_measured_fp32", measured_s, None),
        },
    }


def device_profile_rows(profiles: dict[str, DeviceProfile], devices: list[dict]) -> list[dict]:
    """Which profile each device is planned with, and whether it was measured on a target or is the estimate
    of its device class (the report shows this table)."""
    rows = []
    for d in devices:
        used = profiles[d.get("target") or d["profile"]]
        if used.target:
            how = f"measured on target {used.target}"
        elif used.kind == "measured":
            how = "measured here, under the device's CPU quota (class estimate)"
        else:
            how = "published figures (class estimate)"
        rows.append({"device": d["name"], "profile": used.name, "how": how, "source": used.source})
    return rows
