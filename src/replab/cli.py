"""The ``replab`` command. Heavy imports stay inside the subcommands (peft/diffusers take seconds).

Bad input ends in one line on stderr saying what, where and what to do, and a non-zero exit; ``-v`` adds the
traceback for bugs.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def _params_check(args) -> int:
    from . import config

    params = config.load(args.file)
    if args.schema_only:
        print(f"{args.file}: valid (profile {params.profile}, seed {params.seed})")
        return 0
    config.check_files(params, Path("."), args.file)
    print(f"{args.file}: valid (profile {params.profile}, seed {params.seed}); data and profiles present")
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
    print(f"{args.paper}: wrote {outs['metrics']}, {outs['claims']} and {outs['notebook']}")
    return 0


def _report(args) -> int:
    from . import report

    if args.check and not args.readme:
        raise ValueError("--check goes with --readme (it checks the README's results block)")
    if args.readme:
        changed = report.update_readme(Path(args.readme), Path(args.metrics), check=args.check)
        if args.check and changed:
            print(f"{args.readme}: results block differs from {args.metrics}/; run `replab report --readme`")
            return 1
        print(f"{args.readme}: results block {'rewritten' if changed else 'up to date'}")
        return 0
    index = report.build(Path(args.reports), Path(args.metrics))
    print(f"report index: {index.resolve().as_uri()}")
    return 0


def _strip(args) -> int:
    from .notebooks import strip_file

    if args.output and len(args.notebooks) > 1:
        raise ValueError("--output takes one notebook; without it each notebook is stripped in place")
    for source in args.notebooks:
        strip_file(Path(source), Path(args.output) if args.output else None)
    return 0


def _assets_fetch(args) -> int:
    from .assets import fetch

    print(f"MathJax: {fetch(force=args.force)}")
    return 0


def _pipeline_generate(args) -> int:
    from . import dvcgen

    path = Path(args.file)
    if args.check:
        delta = dvcgen.diff(path)
        if delta:
            print(delta, end="")
            print(f"{path}: differs from the registry; run `replab pipeline generate`", file=sys.stderr)
            return 1
        print(f"{path}: matches the registry")
        return 0
    print(f"{path}: {'written' if dvcgen.write(path) else 'already up to date'}")
    return 0


def _papers(args) -> int:
    from .papers import PAPERS

    for key, paper in PAPERS.items():
        print(f"{key:18} {paper.title}")
    return 0


def _target_list(args) -> int:
    from .targets import config

    for name, t in config.load().items():
        if t.kind == "ssh":
            where = f"ssh {t.destination}{f':{t.port}' if t.port else ''} (python: {t.python})"
        elif t.kind == "emulated":
            where = f"this machine under {f'profile {t.profile}' if t.profile else f'{t.cpu_share:g} core(s)'}'s caps"
        else:
            where = "this machine"
        print(f"{name:16} {where}")
    return 0


def _target_check(args) -> int:
    from .targets import check
    from .targets.config import TargetError

    results, failed = [], False
    for name in args.names:
        try:
            result = check.check(name)
        except TargetError as exc:
            print(f"{name}: NOT READY\n  {exc}")
            failed = True
            continue
        results.append(result)
        print(f"{name}: {'ok' if result.ok else 'NOT READY'}")
        print("\n".join(result.lines()))
        for problem in result.problems:
            print(f"  fix: {problem}")
        failed |= not result.ok
    for problem in check.compatible(results) if len(results) > 1 else []:
        print(f"together: {problem}")
        failed = True
    return 1 if failed else 0


def _target_run(args) -> int:
    from .targets.remote import Remote, expand_inputs

    argv = args.argv
    if not argv:
        raise ValueError(
            "give the command after `--`, e.g. replab target run jetson --output t.json -- "
            "python -m replab.edge.layer_timing --out t.json"
        )
    outputs = {Path(o).as_posix(): Path(o) for o in args.output}
    result = Remote(args.name).run(argv, expand_inputs(args.input), outputs, timeout=args.timeout)
    s = result.shipped
    print(
        f"{args.name}: done in {result.seconds:.1f} s; shipped {s.files_sent} of {s.files} files "
        f"({s.payload_bytes} bytes, {s.wire_bytes} on the wire); outputs: {', '.join(outputs) or 'none'}",
        file=sys.stderr,
    )
    return 0


def _target_profile(args) -> int:
    from . import config
    from .targets.profiling import profile_target

    params = config.load(args.params)
    scale = params.targets.scale[params.profile]
    profile, seconds = profile_target(args.name, args.out, grid=scale.grid, repeats=scale.repeats)
    print(f"{args.out}: {len(profile.layers)} layer records measured on {args.name} in {seconds:.1f} s")
    return 0


def _target_pipeline(args) -> int:
    import json

    from .edge.pipeline import PipelineConfig
    from .targets.multihost import launch
    from .targets.remote import Remote

    cfg = PipelineConfig(**json.loads(Path(args.config).read_text()))
    result = launch(cfg, [Remote(n) for n in args.names], timeout=args.timeout, log_dir=args.log_dir)
    losses = result["losses"]
    where = ", ".join(args.names)
    print(f"{len(losses)} steps on {where} in {result['seconds']:.1f} s; loss {losses[0]:.4f} -> {losses[-1]:.4f}")
    return 0


def _federated_deploy(args) -> int:
    import dataclasses
    import json
    import tempfile

    from . import config
    from .federated.deploy import LoopbackFederation, write_app
    from .federated.experiment import base_spec
    from .targets.remote import Remote

    p = config.notebook_parameters(config.load(args.params), "federa")
    remotes = [Remote(n) for n in args.targets]
    n = args.local + len(remotes)
    if n < 2:
        raise ValueError("a federation needs at least 2 SuperNodes: give --local N and/or --targets NAME...")
    if remotes and args.advertise in ("127.0.0.1", "localhost") and args.host == "127.0.0.1":
        print("note: the SuperLink listens on 127.0.0.1: only targets on this machine can reach it "
              "(give --host 0.0.0.0 --advertise <this machine's LAN address>)", file=sys.stderr)  # fmt: skip
    spec = dataclasses.replace(
        base_spec(p, "data"), method=args.method, n_clients=n, alpha=args.alpha or p["headline_alpha"],
        lr=args.lr or p["lr_grid"][0],
    )  # fmt: skip
    out = Path(args.out).resolve()
    min_clients = max(1, n - 1) if args.min_clients is None else args.min_clients
    with tempfile.TemporaryDirectory(prefix="replab-federation-") as tmp:
        folder = Path(args.log_dir) if args.log_dir else Path(tmp)
        app = write_app(folder / "app", spec, args.rounds, out, min_clients, args.round_timeout)
        with LoopbackFederation(folder, args.local, remotes, host=args.host, advertise=args.advertise) as fed:
            done = fed.run(app, timeout=args.round_timeout * (args.rounds + 1) + 600)
        if done.returncode != 0:
            raise RuntimeError(f"flwr run failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    rows = json.loads(out.read_text())
    print(f"{args.rounds} rounds of {spec.method} on {n} SuperNodes; test accuracy "
          f"{rows[0]['test_acc']:.3f} -> {rows[-1]['test_acc']:.3f}; rows in {args.out}")  # fmt: skip
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, with its two-line usage error made one line."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="replab", description="Reproducible re-implementations of six ML papers.")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages; tracebacks on errors")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    params = sub.add_parser("params", help="params.yaml").add_subparsers(dest="action", required=True)
    check = params.add_parser("check", help="validate params.yaml, and the files it names (data, profiles)")
    check.add_argument("file", nargs="?", default="params.yaml")
    check.add_argument("--schema-only", action="store_true", help="skip the checks that need data/ (before it exists)")
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
    report.add_argument("--readme", nargs="?", const="README.md", help="rewrite the README's results block instead")
    report.add_argument("--check", action="store_true", help="with --readme: only say whether it is up to date")
    report.set_defaults(func=_report)

    nb = sub.add_parser("notebook", help="notebook utilities").add_subparsers(dest="action", required=True)
    strip = nb.add_parser("strip", help="strip outputs and execution counts (keeps cell ids), in place")
    strip.add_argument("notebooks", nargs="+")
    strip.add_argument("-o", "--output", help="write the stripped copy here instead (one notebook)")
    strip.set_defaults(func=_strip)

    pipeline = sub.add_parser("pipeline", help="dvc.yaml").add_subparsers(dest="action", required=True)
    generate = pipeline.add_parser("generate", help="write dvc.yaml from the paper registry")
    generate.add_argument("--check", action="store_true", help="only say whether dvc.yaml matches (exit 1 if not)")
    generate.add_argument("--file", default="dvc.yaml")
    generate.set_defaults(func=_pipeline_generate)

    papers = sub.add_parser("papers", help="list the registered papers")
    papers.set_defaults(func=_papers)

    target = sub.add_parser("target", help="device targets: this machine, devices over SSH, emulated devices")
    tsub = target.add_subparsers(dest="action", required=True)
    tlist = tsub.add_parser("list", help="the defined targets (targets.local.yaml, or $REPLAB_TARGETS)")
    tlist.set_defaults(func=_target_list)
    tcheck = tsub.add_parser("check", help="reachability, Python, torch, gloo, memory, disk, CPU/GPU")
    tcheck.add_argument("names", nargs="+", metavar="NAME", help="several: also check they can run one pipeline")
    tcheck.set_defaults(func=_target_check)
    trun = tsub.add_parser("run", help="ship this checkout's code and inputs, run ARGV there, bring outputs back")
    trun.add_argument("name")
    trun.add_argument("--input", action="append", default=[], help="a repository-relative file or folder to ship")
    trun.add_argument("--output", action="append", default=[], help="a relative path the command writes")
    trun.add_argument("--timeout", type=float, help="seconds (default: the target's run_timeout_s)")
    trun.add_argument("argv", nargs="*", help="-- then the command; `python` is the target's Python")
    trun.set_defaults(func=_target_run)
    tprof = tsub.add_parser("profile", help="measure per-layer latencies on a target (the profile@NAME stage)")
    tprof.add_argument("name")
    tprof.add_argument("--out", required=True)
    tprof.add_argument("--params", default="params.yaml")
    tprof.set_defaults(func=_target_profile)
    tpipe = tsub.add_parser("pipeline", help="the edge pipeline with one rank per target (gloo over the LAN)")
    tpipe.add_argument("names", nargs="+", metavar="NAME")
    tpipe.add_argument("--config", required=True, help="a PipelineConfig as JSON (a run's logs hold config.json)")
    tpipe.add_argument("--timeout", type=float)
    tpipe.add_argument("--log-dir")
    tpipe.set_defaults(func=_target_pipeline)

    fed = sub.add_parser("federated", help="FeDeRA's Flower apps on real SuperNodes").add_subparsers(
        dest="action", required=True
    )
    deploy = fed.add_parser(
        "deploy", help="a SuperLink here, SuperNodes here (--local) and one on each SSH target, then `flwr run`"
    )
    deploy.add_argument("--targets", nargs="*", default=[], metavar="NAME", help="SSH targets (targets.local.yaml)")
    deploy.add_argument("--local", type=int, default=0, help="SuperNodes on this machine")
    deploy.add_argument("--method", default="federa")
    deploy.add_argument("--rounds", type=int, default=3)
    deploy.add_argument("--alpha", type=float, help="Dirichlet alpha (default: federa.headline_alpha)")
    deploy.add_argument("--lr", type=float, help="learning rate (default: the grid's first)")
    deploy.add_argument(
        "--min-clients",
        type=int,
        help="SuperNodes that must be connected to start a round (default: all but one, so one dead node does "
        "not stall the run; 0: all)",
    )
    deploy.add_argument(
        "--round-timeout", type=float, default=600, help="seconds a round waits for replies (then aggregates those)"
    )
    deploy.add_argument("--host", default="127.0.0.1", help="where the SuperLink listens")
    deploy.add_argument("--advertise", default="127.0.0.1", help="the SuperLink's address as targets see it")
    deploy.add_argument("--log-dir", help="keep the SuperLink's and SuperNodes' logs here")
    deploy.add_argument("--out", required=True, help="per-round rows (JSON)")
    deploy.add_argument("--params", default="params.yaml")
    deploy.set_defaults(func=_federated_deploy)

    assets = sub.add_parser("assets", help="third-party files for offline reports").add_subparsers(
        dest="action", required=True
    )
    fetch = assets.add_parser("fetch", help="download and verify MathJax into the environment")
    fetch.add_argument("--force", action="store_true")
    fetch.set_defaults(func=_assets_fetch)
    return p


def _one_line(exc: BaseException) -> str:
    """What went wrong, on one line where the error is one problem (several problems: one line each)."""
    from json import JSONDecodeError

    if isinstance(exc, FileNotFoundError) and exc.filename:
        return f"{exc.filename}: not found"
    if isinstance(exc, IsADirectoryError) and exc.filename:
        return f"{exc.filename}: is a folder, expected a file"
    if isinstance(exc, PermissionError) and exc.filename:
        return f"{exc.filename}: permission denied"
    if isinstance(exc, JSONDecodeError):
        return f"not valid JSON ({exc.msg} at line {exc.lineno})"
    text = str(exc).strip() or type(exc).__name__
    if exc.__class__.__module__.split(".")[0] != "replab" and not isinstance(exc, (OSError, ValueError)):
        text = f"{type(exc).__name__}: {text} (unexpected: `replab -v ...` shows the traceback)"
    return text.splitlines()[0] if isinstance(exc, OSError) else text


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = None  # `replab target run NAME ... -- ARGV`: everything after `--` is the remote command, verbatim
    if "--" in argv:
        command = argv[argv.index("--") + 1 :]
        argv = argv[: argv.index("--")]
    args = parser().parse_args(argv)
    if command is not None:
        if not hasattr(args, "argv"):
            parser().error("`--` only goes with `replab target run`")
        args.argv = [*args.argv, *command]
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("replab: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI's contract: one line, never a traceback
        if args.verbose:
            raise
        print(f"replab: error: {_one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
