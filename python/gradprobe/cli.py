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
                                 model=args.model))
    return 0 if not report.nonfinite_steps else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gradprobe", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("backends", help="list the statistics backends usable here, and why others are not")
    demo = commands.add_parser("demo", help="fine-tune the pre-trained MiniLM on product reviews, watching every gradient")
    demo.add_argument("--steps", type=int, default=20)
    demo.add_argument("--batch-size", type=int, default=16)
    demo.add_argument("--seq-len", type=int, default=64)
    demo.add_argument("--lr", type=float, default=1e-4)
    demo.add_argument("--model", default=None, help="a Hugging Face model directory (default: the packaged MiniLM)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"backends": _cmd_backends, "demo": _cmd_demo}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
