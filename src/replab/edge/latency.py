"""AccEPT's light-weight latency predictor (a reconstruction from the abstract): per-layer compute latency from
layer features and a device descriptor, adapted to an unseen device from a few measurements.

Model: scikit-learn's MLPRegressor on standardised log-features, predicting log latency (errors are relative,
as nn-Meter reports them). ``adapt`` fits a per-device correction from the new measurements, and can also
fine-tune the shared network with replay of the known devices' samples (see its docstring for why that is off
by default).
"""

from __future__ import annotations

import numpy as np
from sklearn.neural_network import MLPRegressor
from sklearn.preprocessing import StandardScaler

from .profiles import DeviceProfile, LayerRecord

LAYER_TYPES = (
    "Linear",
    "Conv2d",
    "MultiheadAttention",
    "LayerNorm",
    "GELU",
    "ReLU",
    "Embedding",
    "Dropout",
    "Embed",
    "Block",
    "Head",
    "other",
)  # the last three: the pipeline layers of replab.edge.models


def layer_features(record: LayerRecord, backward: bool) -> list[float]:
    onehot = [float(record.type == t) for t in LAYER_TYPES[:-1]]
    onehot.append(float(record.type not in LAYER_TYPES[:-1]))
    return [
        np.log1p(record.flops),
        np.log1p(record.bytes),
        np.log1p(record.in_features),
        np.log1p(record.out_features),
        np.log1p(record.seq_len),
        np.log1p(record.batch),
        float(backward),
        *onehot,
    ]


def samples(profile: DeviceProfile) -> tuple[np.ndarray, np.ndarray]:
    """Feature rows (layer features, then the log device descriptor) and log-latency targets (ms) of a
    profile's measured layers, forward and backward."""
    desc = [np.log(v) for v in profile.descriptor()]
    X, y = [], []
    for rec in profile.layers:
        for backward, ms in ((False, rec.forward_ms), (True, rec.backward_ms)):
            if ms is not None and ms > 0:
                X.append(layer_features(rec, backward) + desc)
                y.append(np.log(ms))
    return np.asarray(X), np.asarray(y)


N_DESCRIPTOR = 3


def _normalised(X: np.ndarray, y: np.ndarray | None = None):
    """The network learns a device-independent cost, ``log(ms * gflops)``, from the layer features alone;
    the device enters through its measured speed, so the model extrapolates to faster or slower devices
    (with only two or three devices to learn from, a descriptor input would not)."""
    log_gflops = X[:, -N_DESCRIPTOR + 1]
    return X[:, :-N_DESCRIPTOR], (None if y is None else y + log_gflops), log_gflops


CALIBRATIONS = {
    "offset": lambda X: np.ones((len(X), 1)),
    # intercept, log FLOPs, log bytes, backward flag (columns 0, 1 and 6 of the layer features)
    "linear": lambda X: np.column_stack([np.ones(len(X)), X[:, 0], X[:, 1], X[:, 6]]),
}


def _ridge(F: np.ndarray, r: np.ndarray, ridge: float) -> np.ndarray:
    return np.linalg.solve(F.T @ F + ridge * np.eye(F.shape[1]), F.T @ r)


def _loo_error(F: np.ndarray, r: np.ndarray, ridge: float) -> float:
    """Leave-one-out squared error of a ridge fit (closed form through the hat matrix)."""
    H = F @ np.linalg.solve(F.T @ F + ridge * np.eye(F.shape[1]), F.T)
    resid = (r - H @ r) / np.clip(1 - np.diag(H), 1e-6, None)
    return float(np.mean(resid**2))


def within(pred_ms: np.ndarray, true_ms: np.ndarray, tolerance: float = 0.10) -> float:
    """Share of predictions within +-tolerance of the truth (nn-Meter's +-10 % figure)."""
    return float(np.mean(np.abs(pred_ms / true_ms - 1) <= tolerance))


def repeat_noise_share(
    runs: list[list[LayerRecord]], tolerance: float = 0.10, names: set[str] | None = None
) -> dict[str, float]:
    """How often one measurement lies within ±``tolerance`` of the median of the other repeats of the same
    layer on the same device: the share a perfect predictor could reach against single measurements. Per
    direction (forward and backward separately) and per layer (forward + backward); only the records in
    ``names`` where given."""
    direction, layer = [], []
    for i, run in enumerate(runs):
        others = [r for j, r in enumerate(runs) if j != i]
        for k, rec in enumerate(run):
            if names is not None and rec.name not in names:
                continue
            for field in ("forward_ms", "backward_ms"):
                ref = np.median([getattr(o[k], field) for o in others])
                direction.append(abs(getattr(rec, field) / ref - 1) <= tolerance)
            ref = np.median([o[k].forward_ms + o[k].backward_ms for o in others])
            layer.append(abs((rec.forward_ms + rec.backward_ms) / ref - 1) <= tolerance)
    if not layer:
        raise ValueError("no repeated record to score (none of the names was measured)")
    return {"direction": float(np.mean(direction)), "layer": float(np.mean(layer)), "repeats": len(runs)}


def mape(pred_ms: np.ndarray, true_ms: np.ndarray) -> float:
    return float(np.mean(np.abs(pred_ms / true_ms - 1)))


class LatencyPredictor:
    def __init__(self, hidden: tuple[int, ...] = (64, 64), replay_size: int = 2000, random_state: int = 0):
        self.hidden, self.replay_size, self.random_state = hidden, replay_size, random_state
        self.scaler = StandardScaler()
        self.model = MLPRegressor(
            hidden_layer_sizes=hidden,
            alpha=1e-3,
            learning_rate_init=3e-3,
            max_iter=5000,
            random_state=random_state,
            tol=1e-6,
        )
        self._replay: tuple[np.ndarray, np.ndarray] | None = None
        self._calibration: dict[str, tuple[str, np.ndarray]] = {}  # per adapted device: (CALIBRATIONS key, weights)

    def fit(self, profiles: list[DeviceProfile]) -> LatencyPredictor:
        X, y = map(np.concatenate, zip(*(samples(p) for p in profiles)))
        features, target, _ = _normalised(X, y)
        self.model.fit(self.scaler.fit_transform(features), target)
        rng = np.random.default_rng(self.random_state)
        keep = rng.choice(len(y), size=min(self.replay_size, len(y)), replace=False)
        self._replay = (X[keep], y[keep])
        return self

    def _log_ms(self, X: np.ndarray) -> np.ndarray:
        features, _, log_gflops = _normalised(X)
        return self.model.predict(self.scaler.transform(features)) - log_gflops

    def predict_ms(
        self, profile: DeviceProfile, records: list[LayerRecord] | None = None, backward: bool | None = None
    ):
        """Predicted ms for ``records`` (default: the profile's layers), forward and backward interleaved as in
        :func:`samples`, or one direction when ``backward`` is set."""
        desc = [np.log(v) for v in profile.descriptor()]
        records = profile.layers if records is None else records
        directions = (False, True) if backward is None else (backward,)
        X = np.asarray([layer_features(r, b) + desc for r in records for b in directions])
        log_ms = self._log_ms(X)
        if profile.name in self._calibration:
            kind, weights = self._calibration[profile.name]
            log_ms = log_ms + CALIBRATIONS[kind](X) @ weights
        return np.exp(log_ms)

    def adapt(
        self, profile: DeviceProfile, n_measurements: int, epochs: int = 0, seed: int = 0, ridge: float = 0.1
    ) -> LatencyPredictor:
        """Adapt to ``profile`` (an unseen device) from ``n_measurements`` of its samples: a per-device
        correction of the log-latency (an offset, or an offset with slopes, whichever predicts the held-out
        measurements better), which leaves the known devices untouched. With ``epochs > 0`` the shared network
        is first fine-tuned on the new samples, each step mixed with an equal draw from the replay buffer; on the
        synthetic test devices that hurt both the new and the known devices (MAPE 0.05 -> 0.19 and 0.01 -> 0.28
        at 30 epochs), so it is off."""
        if self._replay is None:
            raise ValueError("fit() the predictor on known devices before adapting it")
        if n_measurements <= 0:
            return self
        X_new, y_new = samples(profile)
        rng = np.random.default_rng(seed)
        pick = rng.choice(len(y_new), size=min(n_measurements, len(y_new)), replace=False)
        X_new, y_new = X_new[pick], y_new[pick]
        X_old, y_old = self._replay
        for _ in range(epochs):
            old = rng.choice(len(y_old), size=max(len(y_new), 16), replace=False)
            features, target, _ = _normalised(np.concatenate([X_new, X_old[old]]), np.concatenate([y_new, y_old[old]]))
            self.model.partial_fit(self.scaler.transform(features), target)
        # What the shared model still misses on this device: a ridge-shrunk offset of the log-latency, used
        # only for this device.
        residual = y_new - self._log_ms(X_new)
        # A single offset, or an offset with slopes in FLOPs and bytes: chosen by leave-one-out error on the
        # measurements themselves (slopes overfit a handful of points; a memory-bound device needs them).
        kind = min(CALIBRATIONS, key=lambda k: _loo_error(CALIBRATIONS[k](X_new), residual, ridge))
        self._calibration[profile.name] = (kind, _ridge(CALIBRATIONS[kind](X_new), residual, ridge))
        return self
