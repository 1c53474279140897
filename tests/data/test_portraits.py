"""The procedural portraits: deterministic, identities fixed across styles, held-out identities never trained on."""

import numpy as np
import pytest

from replab.data import portraits


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("portraits")
    portraits.build_profile(out / "portraits" / "tiny", "tiny")
    return out, portraits.load(out, "tiny")


def test_build_is_deterministic(tiny, tmp_path):
    out, _ = tiny
    portraits.build_profile(tmp_path / "again", "tiny")
    for path in sorted((out / "portraits" / "tiny").rglob("*")):
        if path.is_file():
            twin = tmp_path / "again" / path.relative_to(out / "portraits" / "tiny")
            assert path.read_bytes() == twin.read_bytes(), path.name


def test_splits_shapes_and_no_identity_leak(tiny):
    _, data = tiny
    meta = data.meta
    size, n_train = meta["size"], meta["train_ids"]
    train, heldout = data.splits["train"], data.splits["heldout"]
    assert train.images.shape == (n_train * meta["per_id"], size, size, 3) and train.images.dtype == np.uint8
    assert set(np.unique(train.identity)) == set(range(n_train))
    assert set(np.unique(heldout.identity)) == set(range(n_train, n_train + meta["heldout_ids"]))
    scenes = data.splits["train_scenes"]
    assert scenes.masks.shape[1] == 2 and (scenes.identity < n_train).all()
    assert (data.splits["heldout_scenes"].identity >= n_train).all()
    assert len(train.captions) == len(train.images) and all("portrait" in c for c in train.captions)


def test_the_identity_factors_persist_and_the_style_varies():
    factors = portraits.draw_identity(portraits.SEED, 7)
    np.testing.assert_array_equal(factors, portraits.draw_identity(portraits.SEED, 7))
    assert not np.array_equal(factors, portraits.draw_identity(portraits.SEED, 8))
    first = portraits._single(portraits.SEED, 7, 0, factors, 32)
    second = portraits._single(portraits.SEED, 7, 1, factors, 32)
    assert first[2] != second[2] and not np.array_equal(first[0], second[0])


def test_masks_and_boxes_cover_the_face(tiny):
    _, data = tiny
    train = data.splits["train"]
    area = train.masks.reshape(len(train.masks), -1).mean(axis=1)
    assert ((area > 0.1) & (area < 0.6)).all()  # a face, not the whole image
    for mask, (x0, y0, x1, y1) in zip(train.masks, train.boxes):
        ys, xs = np.nonzero(mask)
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x0, y0, x1, y1)
    scenes = data.splits["heldout_scenes"]
    assert not (scenes.masks[:, 0] & scenes.masks[:, 1]).any()  # instance masks do not overlap
    assert (scenes.masks.reshape(len(scenes.masks), 2, -1).sum(axis=2) > 0).all()


def test_load_names_the_missing_build(tmp_path):
    with pytest.raises(FileNotFoundError, match="replab data build"):
        portraits.load(tmp_path, "tiny")
