"""Command line: ``python -m lora_np demo [--out DIR] [--backend numpy|emulated|cupy] [--no-progress]``.

The report goes to stdout, the progress bars to stderr."""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lora_np", description="LoRA in NumPy, for learning.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="pretrain, show the grape/raisin confusion, fix it with LoRA")
    demo.add_argument("--out", default="outputs", help="folder for the figures (default: outputs)")
    demo.add_argument("--backend", default=None, help="numpy (default), emulated or cupy")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--no-progress", action="store_true", help="no progress bars (on stderr)")
    args = parser.parse_args(argv)

    from . import backend
    if args.backend:
        try:
            backend.set_backend(args.backend)
        except (ValueError, RuntimeError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    from .demo import run_demo
    run_demo(out_dir=args.out, seed=args.seed, progress=not args.no_progress)
    return 0


if __name__ == "__main__":
    sys.exit(main())
