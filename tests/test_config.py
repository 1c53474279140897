import copy

import pytest
import yaml

from replab import config
from replab.cli import main

from .conftest import ROOT


@pytest.fixture
def raw():
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_repository_params_are_valid(raw):
    params = config.validate(raw)
    flat = config.notebook_parameters(params, "schrodinger_pca")
    assert flat["profile"] == params.profile
    assert flat["sweep_grid"] == raw["schrodinger_pca"]["scale"][params.profile]["sweep_grid"]
    assert "scale" not in flat


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: r["schrodinger_pca"].update(anchor_spcing=3), r"schrodinger_pca\.anchor_spcing: unknown key"),
        (lambda r: r.update(extra_section={}), r"extra_section: unknown key"),
        (lambda r: r["schrodinger_pca"].update(n_components="ten"), r"schrodinger_pca\.n_components: .*integer"),
        (
            lambda r: r["schrodinger_pca"].update(n_components=0),
            r"schrodinger_pca\.n_components: .*greater than or equal to 1",
        ),
        (lambda r: r["schrodinger_pca"].update(interpolation="nearest"), r"schrodinger_pca\.interpolation"),
        (lambda r: r.update(profile="huge"), r"profile: Input should be 'tiny', 'laptop' or 'paper'"),
        (lambda r: r.pop("seed"), r"seed: required key is missing"),
        (lambda r: r["schrodinger_pca"]["scale"].pop("paper"), r"missing \['paper'\]"),
        (lambda r: r["schrodinger_pca"]["scale"]["tiny"].update(sweep_grid=5), r"scale\.tiny\.sweep_grid"),
        (
            lambda r: r["schrodinger_pca"].update(sweep_anchor_spacings=[1, 2]),
            r"sweep_anchor_spacings must all be >= 2",
        ),
    ],
)
def test_bad_params_name_the_key(raw, edit, message):
    bad = copy.deepcopy(raw)
    edit(bad)
    with pytest.raises(config.ParamsError, match=message):
        config.validate(bad)


def test_every_error_is_reported_at_once(raw):
    bad = copy.deepcopy(raw)
    bad["seed"] = -1
    bad["schrodinger_pca"]["degeneracy_tol"] = 5
    with pytest.raises(config.ParamsError) as info:
        config.validate(bad)
    assert "seed" in str(info.value) and "degeneracy_tol" in str(info.value)


def test_cli_params_check(tmp_path, raw, capsys):
    good = tmp_path / "params.yaml"
    good.write_text(yaml.safe_dump(raw))
    assert main(["params", "check", str(good)]) == 0
    raw["schrodinger_pca"]["typo_key"] = 1
    good.write_text(yaml.safe_dump(raw))
    assert main(["params", "check", str(good)]) == 2
    assert "schrodinger_pca.typo_key: unknown key" in capsys.readouterr().err
    (tmp_path / "broken.yaml").write_text("profile: [unclosed")
    assert main(["params", "check", str(tmp_path / "broken.yaml")]) == 2
    assert "not valid YAML" in capsys.readouterr().err
