from replab.federated.flower import Spec


def tiny_spec(**kw) -> Spec:
    """Full fine-tuning of a tiny random BERT (MiniLM's tokenizer) on 4 supersenses: learns within 2 rounds."""
    from ..conftest import ROOT

    fields = dict(
        method="fft",
        model="tiny-random-bert",
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
