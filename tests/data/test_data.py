import json

import numpy as np
import pytest

from replab.data import gp_fields, sklearn_sets, wordnet
from replab.data.build import build

from ..conftest import ROOT, copy_project, run


def test_wordnet_line_parser():
    line = "02084071 05 n 02 dog 0 domestic_dog 0 012 @ 02083346 n 0000 | a member of the genus Canis"
    assert wordnet.parse_line(line) == ("02084071", "noun.animal", "dog", "a member of the genus Canis")
    with pytest.raises(ValueError, match="not a noun file"):
        wordnet.parse_line("00001740 29 n 01 entity 0 000 | x")


def test_built_data_sets(tmp_path, monkeypatch):
    from replab.data.build import DATASETS

    # The portraits have their own tests (tests/data/test_portraits.py); the full set is built in the rebuild test.
    monkeypatch.delitem(DATASETS, "portraits")
    out = build(tmp_path / "data")
    x, y = sklearn_sets.load(out, "iris")
    assert x.shape == (150, 4) and set(np.unique(y)) == {0, 1, 2}
    glosses = wordnet.load(out)
    assert len(glosses) > 80_000 and glosses.supersense.nunique() == 26
    assert (glosses.gloss.str.len() > 0).all()
    samples, meta, model = gp_fields.load(out, "tiny")
    assert samples.shape == (meta["n_samples"], meta["grid"], meta["grid"]) and samples.dtype == np.float32
    assert meta["correlation_length"] == pytest.approx(model.correlation_length)
    with pytest.raises(ValueError, match="unknown data set"):
        sklearn_sets.load(out, "mnist")


def test_build_failure_leaves_the_old_data_untouched(tmp_path, monkeypatch):
    out = tmp_path / "data"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    monkeypatch.setattr(wordnet, "DATA_NOUN", tmp_path / "missing")
    monkeypatch.setattr(wordnet.build, "__defaults__", (tmp_path / "missing",))
    with pytest.raises(FileNotFoundError, match="apt-get install -y wordnet-base"):
        build(out)
    assert (out / "keep.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["data"]  # no staging folder left behind


# A full build of every data set (~45 s): in `make test-exhaustive`, which CI runs.
@pytest.mark.exhaustive
def test_rebuild_in_a_clean_copy_hashes_as_data_dvc(tmp_path):
    project = copy_project(tmp_path / "clone", with_data=False)
    assert not (project / "data").exists()
    run(["replab", "data", "build"], project)
    # `dvc commit` hashes the workspace data; it rewrites data.dvc only if the hash differs.
    run(["dvc", "commit", "-f", "data.dvc"], project)
    assert (project / "data.dvc").read_text() == (ROOT / "data.dvc").read_text()
    assert json.loads(run(["dvc", "status", "--json", "data.dvc"], project).stdout) == {}


# A full build of every data set (~45 s): in `make test-exhaustive`, which CI runs.
@pytest.mark.exhaustive
def test_ensure_detects_data_that_differ_from_data_dvc(tmp_path):
    project = copy_project(tmp_path / "clone", with_data=False)
    (project / ".dvc" / "config").write_text("[core]\n    analytics = false\n")  # no remote to pull from
    assert "built (matches data.dvc)" in run(["replab", "data", "ensure"], project).stdout
    assert "up to date" in run(["replab", "data", "ensure"], project).stdout
    meta = project / "data" / "wordnet" / "meta.json"
    good = meta.read_text()
    meta.unlink()
    meta.write_text("{}")  # a stale or hand-edited data set
    record = (project / "data.dvc").read_text()
    assert "restored from the DVC cache" in run(["replab", "data", "ensure"], project).stdout
    assert meta.read_text() == good
    assert (project / "data.dvc").read_text() == record
