"""The gradprobe command line."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence


def _cmd_backends(_: argparse.Namespace) -> int:
    from . import backends, unavailable_backends

    for name in backends():
        print(f"{name:6s} usable")
    for name, reason in unavailable_backends().items():
        print(f"{name:6s} unavailable: {reason}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .workflows.demo import DemoConfig, run_demo

    report = run_demo(DemoConfig(steps=args.steps, batch_size=args.batch_size, seq_len=args.seq_len, lr=args.lr,
                                 model=args.model, out_dir=args.out))
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from .show import show_run

    show_run(args.run, top=args.top)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .export.tensorboard import export_tensorboard

    out = export_tensorboard(args.run, args.out)
    print(f"wrote TensorBoard events to {out}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    import os
    import subprocess
    import time

    target = list(args.target)
    if target[:1] == ["--"]:
        target = target[1:]
    if target and os.path.basename(target[0]).startswith("python"):
        target = target[1:]  # run under this interpreter, where gradprobe is installed
    if not target:
        print("gradprobe run: give the command, e.g. gradprobe run -- python train.py --epochs 3", file=sys.stderr)
        return 2
    out = args.out or os.path.join("runs", f"{os.path.splitext(os.path.basename(target[-1] if target[0] == '-m' else target[0]))[0]}-{time.strftime('%Y%m%d-%H%M%S')}")
    command = [sys.executable, "-m", "gradprobe.autoattach", "--out", out, "--exist", args.exist]
    if args.config:
        command += ["--config", args.config]
    code = subprocess.call(command + ["--"] + target)
    print(f"gradprobe: run directory {out}", file=sys.stderr)
    return code


def _cmd_rules(args: argparse.Namespace) -> int:
    import inspect

    from .rules import all_rules, default

    in_default = {type(r) for r in default()}
    for rule in all_rules():
        doc = inspect.getdoc(rule) or ""
        params = ", ".join(f"{f.name}={f.default!r}" for f in rule.parameters() if f.name != "severity")
        marker = "*" if rule in in_default else " "
        print(f"{rule.code} {marker} {rule.__name__} [{rule.default_severity.name.lower()}]  {doc.splitlines()[0] if doc else ''}")
        if params:
            print(f"        parameters: {params}")
        if args.verbose:
            for line in doc.splitlines()[1:]:
                print(f"        {line}")
    print("\n* in gradprobe.rules.default()")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from .rules import Severity, at_least, check_run, resolve

    findings = check_run(args.run, resolve(args.rules))
    for f in findings:
        print(f"step {f.step:>6} {f.mode:5s} {f.code} {f.severity.name.lower():8s} {f.rule}: {f.message}")
    serious = at_least(findings, args.fail_on)
    print(f"{len(findings)} findings, {len(serious)} at or above {Severity.parse(args.fail_on).name.lower()}")
    return 1 if serious else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gradprobe", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("backends", help="list the statistics backends usable here, and why others are not")
    demo = commands.add_parser("demo", help="fine-tune the pre-trained MiniLM on product reviews, watching every gradient")
    demo.add_argument("--steps", type=int, default=30)
    demo.add_argument("--batch-size", type=int, default=16)
    demo.add_argument("--seq-len", type=int, default=64)
    demo.add_argument("--lr", type=float, default=5e-5)
    demo.add_argument("--out", default=None, help="run directory (default: runs/demo-<time>)")
    demo.add_argument("--model", default=None, help="a Hugging Face model directory (default: the packaged MiniLM)")
    show = commands.add_parser("show", help="summarise a run directory in the terminal")
    show.add_argument("run")
    show.add_argument("--top", type=int, default=12, help="tensors per table")
    export = commands.add_parser("export", help="export a run to another tool")
    export.add_argument("format", choices=["tensorboard"])
    export.add_argument("run")
    export.add_argument("--out", default=None, help="output directory (default: RUN/tensorboard)")
    run = commands.add_parser("run", help="record a training script without editing it: gradprobe run -- python train.py")
    run.add_argument("--out", default=None, help="run directory (default: runs/<script>-<time>)")
    run.add_argument("--config", default=None, help="a preset (minimal, default, full) or a YAML/JSON config file")
    run.add_argument("--exist", default="error", choices=["error", "append", "overwrite"])
    run.add_argument("target", nargs=argparse.REMAINDER, help="-- python train.py ARGS")
    rules = commands.add_parser("rules", help="list the rules with codes, defaults and descriptions")
    rules.add_argument("--verbose", "-v", action="store_true", help="full descriptions")
    check = commands.add_parser("check", help="run the rules over a stored run (exit 1 on serious findings)")
    check.add_argument("run")
    check.add_argument("--rules", default="default", help="'default', 'all', or codes/names, comma-separated")
    check.add_argument("--fail-on", default="error", help="severity that makes the exit code 1 (default: error)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except BrokenPipeError:  # e.g. `gradprobe rules | head`
        sys.stderr.close()
        return 0


def _dispatch(args: argparse.Namespace) -> int:
    handlers = {"backends": _cmd_backends, "demo": _cmd_demo, "show": _cmd_show, "export": _cmd_export,
                "run": _cmd_run, "rules": _cmd_rules, "check": _cmd_check}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
