"""The ``replab`` command. Heavy imports stay inside the subcommands (peft/diffusers take seconds)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def _params_check(args) -> int:
    from . import config

    params = config.load(args.file)
    print(f"{args.file}: valid (profile {params.profile}, seed {params.seed})")
    return 0


def _data_build(args) -> int:
    from .data import build

    out = build(Path(args.out))
    print(f"built {out}/")
    return 0


def _data_ensure(args) -> int:
    from .data.build import ensure

    print(f"data/: {ensure()}")
    return 0


def _stage(args) -> int:
    from .pipeline import run_stage

    outs = run_stage(args.paper, Path(args.params))
    print(f"{args.paper}: wrote {outs['metrics']} and {outs['notebook']}")
    return 0


def _report(args) -> int:
    from .report import build

    index = build(Path(args.reports), Path(args.metrics))
    print(f"report index: {index.resolve().as_uri()}")
    return 0


def _strip(args) -> int:
    from .notebooks import strip_file

    strip_file(Path(args.source), Path(args.dest) if args.dest else None)
    return 0


def _assets_fetch(args) -> int:
    from .assets import fetch

    print(f"MathJax: {fetch(force=args.force)}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="replab", description="Reproducible re-implementations of six ML papers.")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = p.add_subparsers(dest="command", required=True)

    params = sub.add_parser("params", help="params.yaml").add_subparsers(dest="action", required=True)
    check = params.add_parser("check", help="validate params.yaml against the schema, and nothing else")
    check.add_argument("file", nargs="?", default="params.yaml")
    check.set_defaults(func=_params_check)

    data = sub.add_parser("data", help="data sets").add_subparsers(dest="action", required=True)
    build = data.add_parser("build", help="write data/ deterministically from what packages ship")
    build.add_argument("--out", default="data")
    build.set_defaults(func=_data_build)
    ensure = data.add_parser("ensure", help="make data/ match data.dvc: pull from the remote, else build")
    ensure.set_defaults(func=_data_ensure)

    stage = sub.add_parser("stage", help="run one paper's notebook stage (what dvc.yaml calls)")
    stage.add_argument("paper")
    stage.add_argument("--params", default="params.yaml")
    stage.set_defaults(func=_stage)

    report = sub.add_parser("report", help="render executed notebooks and the index to HTML")
    report.add_argument("--reports", default="reports")
    report.add_argument("--metrics", default="metrics")
    report.set_defaults(func=_report)

    nb = sub.add_parser("notebook", help="notebook utilities").add_subparsers(dest="action", required=True)
    strip = nb.add_parser("strip", help="strip outputs and execution counts (keeps cell ids)")
    strip.add_argument("source")
    strip.add_argument("dest", nargs="?")
    strip.set_defaults(func=_strip)

    assets = sub.add_parser("assets", help="third-party files for offline reports").add_subparsers(
        dest="action", required=True
    )
    fetch = assets.add_parser("fetch", help="download and verify MathJax into the environment")
    fetch.add_argument("--force", action="store_true")
    fetch.set_defaults(func=_assets_fetch)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from .config import ParamsError
    from .pipeline import StageError

    try:
        return args.func(args)
    except (ParamsError, StageError, FileNotFoundError, RuntimeError) as exc:
        print(f"replab: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
