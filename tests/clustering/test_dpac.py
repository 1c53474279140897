import numpy as np
import pytest
import torch

from replab.clustering import dpac


def tiny_images(n=96, seed=0):
    rng = np.random.default_rng(seed)
    # Two classes of 8x8 images: a bright left half or a bright top half, plus noise.
    x = rng.uniform(0, 0.2, (n, 1, 8, 8)).astype(np.float32)
    x[: n // 2, :, :, :4] += 0.7
    x[n // 2 :, :, :4, :] += 0.7
    return torch.from_numpy(np.clip(x, 0, 1))


def test_a_tiny_dpac_run_lowers_its_loss():
    config = dpac.DPACConfig(
        n_clusters=2,
        width=8,
        feature_dim=16,
        projection_dim=16,
        warmup_epochs=0,
        epochs=8,
        batch_size=32,
        lr=3e-3,
        seed=0,
    )
    model, history = dpac.train(tiny_images(), config, progress=False)
    assert history.phase == ["dpac"] * 8
    assert np.mean(history.loss[-2:]) < history.loss[0]
    features, probs = model.embed(tiny_images())
    assert features.shape == (96, 16) and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_training_is_deterministic_and_warmup_is_simclr_only():
    config = dpac.DPACConfig(
        n_clusters=2, width=4, feature_dim=8, projection_dim=8, warmup_epochs=1, epochs=1, batch_size=48
    )
    _, h1 = dpac.train(tiny_images(), config, progress=False)
    _, h2 = dpac.train(tiny_images(), config, progress=False)
    assert h1.loss == h2.loss
    assert h1.phase == ["simclr", "dpac"] and np.isnan(h1.kl[0]) and not np.isnan(h1.kl[1])


def test_checkpoint_round_trip(tmp_path):
    config = dpac.DPACConfig(
        n_clusters=3, width=4, feature_dim=8, projection_dim=8, warmup_epochs=0, epochs=1, batch_size=48
    )
    model, history = dpac.train(tiny_images(), config, progress=False)
    path = dpac.save_checkpoint(model, tmp_path / "m.safetensors", history)
    loaded = dpac.load_checkpoint(path)
    assert loaded.config == config
    x = tiny_images(10)
    model.eval()
    torch.testing.assert_close(loaded(x)[1], model(x)[1])


def test_augment_keeps_shape_range_and_varies():
    x = tiny_images(16)
    g = torch.Generator().manual_seed(0)
    a, b = dpac.augment(x, g), dpac.augment(x, g)
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    assert not torch.equal(a, b)


def test_bad_image_shape():
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        dpac.train(torch.zeros(4, 8, 8), dpac.DPACConfig(epochs=1), progress=False)


def test_resnet18_backbone_on_colour_images():
    config = dpac.DPACConfig(
        n_clusters=3, channels=3, backbone="resnet18", feature_dim=512, warmup_epochs=0, epochs=1, batch_size=8
    )
    images = torch.rand(16, 3, 32, 32)
    model, history = dpac.train(images, config, progress=False)
    features, probs = model.embed(images)
    assert features.shape == (16, 512) and probs.shape == (16, 3) and np.isfinite(history.loss[0])
    with pytest.raises(ValueError, match="feature_dim must be 512"):
        dpac.DPAC(dpac.DPACConfig(backbone="resnet18", channels=3))


def test_cifar10_binary_reader(tmp_path):
    from replab.clustering import cifar

    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in cifar.BIN_FILES:
        records = rng.integers(0, 256, (3, cifar.RECORD), dtype=np.uint8)
        records[:, 0] = [1, 7, 9]
        records.tofile(folder / name)
    images, labels = cifar.load_cifar10(tmp_path)
    assert images.shape == (18, 3, 32, 32) and images.dtype == np.uint8
    assert labels.tolist() == [1, 7, 9] * 6
    with pytest.raises(FileNotFoundError, match="CIFAR-10 not found"):
        cifar.load_cifar10(tmp_path / "missing")


def test_checkpoint_bytes_do_not_depend_on_the_process(tmp_path):
    """safetensors orders its metadata map differently in each process; the checkpoint must not."""
    import subprocess
    import sys

    code = (
        "import sys, torch; from replab.clustering import dpac; torch.manual_seed(0); "
        "m = dpac.DPAC(dpac.DPACConfig()); h = dpac.TrainingHistory(epoch=[0], phase=['a'], loss=[1.0], kl=[0.5], "
        "info_nce=[0.5]); dpac.save_checkpoint(m, sys.argv[1], h)"
    )
    paths = [tmp_path / f"{i}.safetensors" for i in range(3)]
    for path in paths:
        subprocess.run([sys.executable, "-c", code, str(path)], check=True)
    assert len({p.read_bytes() for p in paths}) == 1
