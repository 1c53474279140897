"""Bad input through the CLI: one line naming the key or file, a non-zero exit, never a traceback."""

import subprocess
import sys

import pytest
import yaml

from replab.cli import main
from replab.papers import PAPERS

from .conftest import ROOT


def call(argv, capsys):
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse
        rc = exc.code
    err = capsys.readouterr().err
    return rc, [line for line in err.splitlines() if line.strip()]


@pytest.fixture
def params(tmp_path):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())

    def write(edit=None, text=None):
        path = tmp_path / "params.yaml"
        if text is not None:
            path.write_text(text)
        else:
            data = yaml.safe_load(yaml.safe_dump(raw))
            if edit:
                edit(data)
            path.write_text(yaml.safe_dump(data))
        return str(path)

    return write


def _set(path, value):
    def edit(data):
        *head, last = path.split(".")
        node = data
        for key in head:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[last] = value

    return edit


CASES = [
    # (name, argv builder, expected fragment)
    ("unknown key", lambda p, t: ["params", "check", p(_set("accept.bitz", 4))], "accept.bitz: unknown key"),
    ("wrong type", lambda p, t: ["params", "check", p(_set("seed", "zero"))], "seed: Input should be a valid integer"),
    (
        "out of range",
        lambda p, t: ["params", "check", p(_set("accept.devices.0.cpu_share", 0.01))],
        "accept.devices.0.cpu_share: Input should be greater than or equal to 0.1",
    ),
    ("missing file", lambda p, t: ["params", "check", str(t / "nope.yaml")], "nope.yaml: not found"),
    ("corrupt file", lambda p, t: ["params", "check", p(text="profile: [unclosed")], "not valid YAML at line"),
    (
        "missing profile",
        lambda p, t: ["params", "check", p(_set("accept.unseen_profile", "dev-nope"))],
        "accept.unseen_profile: no profile 'dev-nope' in profiles/",
    ),
    (
        "unknown paper",
        lambda p, t: ["stage", "nosuch"],
        f"unknown paper 'nosuch'; known: {', '.join(sorted(PAPERS))}",
    ),
    ("stage, missing params", lambda p, t: ["stage", "pac", "--params", str(t / "nope.yaml")], "nope.yaml: not found"),
    ("stage, wrong type", lambda p, t: ["stage", "pac", "--params", p(_set("pac.dpac_lr", "fast"))], "pac.dpac_lr"),
    ("unknown subcommand", lambda p, t: ["frobnicate"], "invalid choice: 'frobnicate'"),
    (
        "federa, unknown method",
        lambda p, t: ["params", "check", p(_set("federa.methods", ["federa", "lora", "fft", "dora"]))],
        "unknown methods ['dora']",
    ),
    (
        "federa, alpha not positive",
        lambda p, t: ["params", "check", p(_set("federa.headline_alpha", 0))],
        "federa.headline_alpha: Input should be greater than 0",
    ),
    (
        "federation of one",
        lambda p, t: ["federated", "deploy", "--local", "1", "--out", str(t / "rows.json")],
        "a federation needs at least 2 SuperNodes",
    ),
    (
        "federation, unknown target",
        lambda p, t: ["federated", "deploy", "--targets", "nosuch", "--local", "1", "--out", str(t / "rows.json")],
        "nosuch",
    ),
    ("strip, missing file", lambda p, t: ["notebook", "strip", str(t / "none.ipynb")], "none.ipynb: not found"),
    (
        "strip, corrupt file",
        lambda p, t: ["notebook", "strip", _write(t / "bad.ipynb", "{nope")],
        "bad.ipynb: not a readable notebook",
    ),
    (
        "report, corrupt claims",
        lambda p, t: ["report", "--reports", str(t), "--metrics", _folder(t / "m", "pac.claims.json", "{nope")],
        "pac.claims.json: not a valid",
    ),
    (
        "report, wrong schema",
        lambda p, t: ["report", "--reports", str(t), "--metrics", _folder(t / "m2", "pac.claims.json", '{"paper": 1}')],
        "pac.claims.json",
    ),
    ("check without readme", lambda p, t: ["report", "--check"], "--check goes with --readme"),
    (
        "report, text where a number is judged",
        lambda p, t: ["report", "--reports", str(t), "--metrics", _claims_with_text(t / "m3")],
        "pac.claims.json",
    ),
    (
        "readme without markers",
        lambda p, t: ["report", "--readme", _write(t / "README.md", "# x\n")],
        "README.md: no results markers",
    ),
    ("data build into a file", lambda p, t: ["data", "build", "--out", _write(t / "f", "") + "/data"], "File exists"),
    (
        "generate, missing folder",
        lambda p, t: ["pipeline", "generate", "--file", str(t / "no" / "dvc.yaml")],
        "no/params.yaml: not found",  # dvc.yaml is generated from the params.yaml beside it
    ),
]


def _write(path, text):
    path.write_text(text)
    return str(path)


def _claims_with_text(folder):
    from replab import claims

    c = claims.claim("x", "x", 0.5, scale="s", method="paper", target=("<=", 1.0))
    results = claims.PaperResults(paper="pac", profile="tiny", scale={}, claims=[c])
    claims.save(results, folder)
    path = folder / "pac.claims.json"
    path.write_text(path.read_text().replace('"ours": 0.5', '"ours": "abc"'))
    return str(folder)


def _folder(folder, name, text):
    folder.mkdir()
    (folder / name).write_text(text)
    return str(folder)


@pytest.mark.parametrize(("name", "argv", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_one_line(name, argv, fragment, params, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    rc, lines = call(argv(params, tmp_path), capsys)
    assert rc not in (0, None), name
    assert len(lines) == 1, lines
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in lines[0]


def test_the_installed_command_prints_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "replab.cli", "stage", "nosuch"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    known = ", ".join(sorted(PAPERS))
    assert proc.stderr.strip() == f"replab: error: unknown paper 'nosuch'; known: {known}"
