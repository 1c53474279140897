"""The compared methods, each a PEFT configuration (never hand-written adapter layers), and the models.

- ``federa``: LoRA initialised from the SVD of the pretrained weights (PEFT's ``init_lora_weights="pissa"``,
  randomised with ``pissa_niter_K`` when ``pissa_niter`` > 0): A, B hold the top-r principal components and
  the frozen base becomes the residual W - s B A, so the model's output at initialisation is unchanged.
- ``lora``: LoRA with PEFT's default init (Kaiming A, zero B).
- ``olora``: LoRA initialised from a QR decomposition of W (PEFT's ``"olora"``), another PEFT baseline.
- ``fft``: full fine-tuning.

In federated training the server initialises once and broadcasts; a client builds the same model from the
broadcast adapter with :func:`client_model` (it derives the residual from A0, B0 itself; it never runs an SVD,
whose signs can differ between an x86 server and an ARM device).
"""

from __future__ import annotations

import re

import torch
from torch import nn

METHODS = ("federa", "lora", "olora", "fft")
SVD_INITS = {"federa", "olora"}  # methods whose base weights become a residual of the broadcast adapter

# Adapters go on the encoder's attention and feed-forward projections only (a regex, so the classifier
# head's own `dense` layer, which is trained in full and aggregated, is never wrapped).
_TARGETS = {
    "bert": r".*encoder.*\.(query|key|value|dense)$",
    "roberta": r".*encoder.*\.(query|key|value|dense)$",
    "deberta-v2": r".*encoder.*\.(query_proj|key_proj|value_proj|dense)$",
}


def target_modules(model_type: str) -> str:
    if model_type not in _TARGETS:
        raise ValueError(f"no LoRA targets known for model type {model_type!r} (known: {', '.join(_TARGETS)})")
    return _TARGETS[model_type]


def lora_config(method: str, model_type: str, r: int = 8, lora_alpha: int = 8, pissa_niter: int = 4):
    """The PEFT config of ``method`` (None for full fine-tuning)."""
    from peft import LoraConfig, TaskType

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r} (known: {', '.join(METHODS)})")
    if method == "fft":
        return None
    if r < 1:
        raise ValueError(f"LoRA rank r must be >= 1, got {r}")
    init: bool | str = {
        "federa": f"pissa_niter_{pissa_niter}" if pissa_niter > 0 else "pissa",
        "lora": True,
        "olora": "olora",
    }[method]
    return LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=r,
        lora_alpha=lora_alpha,
        lora_dropout=0.0,
        target_modules=target_modules(model_type),
        init_lora_weights=init,
    )


def base_model(source, num_labels: int, seed: int = 0) -> nn.Module:
    """A sequence classifier from a local checkpoint path (or a cached model id), or from a transformers config
    (tiny random models in tests); the classifier head is seeded by ``seed``."""
    from transformers import AutoModelForSequenceClassification, PretrainedConfig

    torch.manual_seed(seed)
    if isinstance(source, PretrainedConfig):
        source.num_labels = num_labels
        return AutoModelForSequenceClassification.from_config(source)
    return AutoModelForSequenceClassification.from_pretrained(str(source), num_labels=num_labels)


def server_model(source, num_labels: int, method: str, seed: int = 0, **lora) -> nn.Module:
    """The global model at round 0: for adapter methods, PEFT's model with the method's init (the SVD runs
    here, once)."""
    from peft import get_peft_model

    model = base_model(source, num_labels, seed)
    config = lora_config(method, model.config.model_type, **lora)
    return model if config is None else get_peft_model(model, config)


def client_model(source, num_labels: int, method: str, initial_state: dict[str, torch.Tensor], seed: int = 0, **lora):
    """A client's model built from the broadcast round-0 trainable state: the pretrained base, LoRA layers
    loaded with the broadcast A0, B0 and, for SVD inits, the base weights replaced by W - s B0 A0 (what the
    server's PEFT init did), so every client holds exactly the server's model."""
    from peft import get_peft_model

    model = base_model(source, num_labels, seed)
    config = lora_config(method, model.config.model_type, **lora)
    if config is None:
        model.load_state_dict(initial_state, strict=False)
        return model
    config.init_lora_weights = False  # no init of its own: A0 and B0 arrive from the server
    model = get_peft_model(model, config)
    load_trainable(model, initial_state)
    if method in SVD_INITS:
        subtract_adapters(model)
    return model


def fresh_parameters(source, num_labels: int, model: nn.Module) -> set[str] | None:
    """Names of ``model``'s trainable parameters that a client cannot load from the pretrained checkpoint
    ``source`` (the new classifier head; LoRA's factors): what the round-0 broadcast must carry. None for a
    model built from a config (random weights: clients have no checkpoint, so they get every trainable
    parameter)."""
    from transformers import AutoModelForSequenceClassification, PretrainedConfig

    if isinstance(source, PretrainedConfig):
        return None
    _, info = AutoModelForSequenceClassification.from_pretrained(
        str(source), num_labels=num_labels, output_loading_info=True
    )
    missing = set(info["missing_keys"])  # the head: not in the checkpoint

    def plain(name: str) -> str:  # PEFT's name of a layer -> the checkpoint's
        return name.replace("base_model.model.", "", 1).replace(".modules_to_save.default", "")

    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    return {n for n in trainable if "lora_" in n or plain(n) in missing}


def lora_layers(model: nn.Module):
    """(name, layer) of every LoRA-wrapped linear layer."""
    from peft.tuners.lora import LoraLayer

    return [(n, m) for n, m in model.named_modules() if isinstance(m, LoraLayer)]


@torch.no_grad()
def subtract_adapters(model: nn.Module, adapter: str = "default") -> None:
    """Base weight <- W - s B A for every LoRA layer (PEFT's residual after an SVD-based init)."""
    for _, layer in lora_layers(model):
        a = layer.lora_A[adapter].weight
        b = layer.lora_B[adapter].weight
        base = layer.get_base_layer().weight
        base -= (layer.scaling[adapter] * (b @ a)).to(base.dtype)


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """What a client trains and uploads: adapters and classifier head (every parameter under FFT)."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


@torch.no_grad()
def load_trainable(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    unknown = sorted(set(state) - set(params))
    if unknown:
        raise KeyError(f"state has parameters the model lacks: {unknown[:3]}{' ...' if len(unknown) > 3 else ''}")
    for name, value in state.items():
        params[name].copy_(value)


def trainable_share(model: nn.Module) -> float:
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad) / total


def adapter_pairs(state: dict[str, torch.Tensor]) -> list[tuple[str, str]]:
    """(lora_A name, lora_B name) of each adapted layer in a trainable state."""
    pairs = []
    for name in state:
        if re.search(r"\.lora_A\.[^.]+\.weight$", name):
            b = name.replace(".lora_A.", ".lora_B.")
            if b in state:
                pairs.append((name, b))
    return pairs
