"""Where a notebook writes: the stage's staging folder under `replab stage`, build/scratch/ by hand."""

from replab import nbtools


def test_a_hand_run_writes_to_scratch_not_to_the_tracked_outs(tmp_path, monkeypatch):
    (tmp_path / "params.yaml").write_text("profile: tiny\n")
    (tmp_path / "notebooks").mkdir()
    monkeypatch.delenv(nbtools.OUTPUT_ENV, raising=False)
    out = nbtools.stage_outputs("pac", start=tmp_path / "notebooks")  # JupyterLab runs from notebooks/
    assert out.scratch and out.folder == tmp_path / "build" / "scratch" / "pac"
    assert out.curve("c", [{"x": 1, "y": 0.1234567891}]).read_text() == "x,y\n1,0.123457\n"
    assert not (tmp_path / "metrics").exists() and not (tmp_path / "reports").exists()


def test_a_stage_run_writes_to_its_staging_folder(tmp_path, monkeypatch):
    (tmp_path / "params.yaml").write_text("profile: tiny\n")
    monkeypatch.setenv(nbtools.OUTPUT_ENV, "reports/.staging-pac")
    out = nbtools.stage_outputs("pac", start=tmp_path)
    assert not out.scratch and out.figures == tmp_path / "reports/.staging-pac/figures"
