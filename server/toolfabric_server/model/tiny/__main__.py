"""`python -m toolfabric_server.model.tiny FAMILY OUT [--seed N]`: `toolfabric model make-tiny` in the model venv."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from toolfabric_server.model.tiny import fingerprint
from toolfabric_server.model.tiny.families import FAMILIES
from toolfabric_server.model.tiny.make import make_tiny


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m toolfabric_server.model.tiny")
    parser.add_argument("--family", choices=sorted(FAMILIES), required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    out = make_tiny(args.family, args.out, args.seed)
    print(f"{out} ({args.family}, seed {args.seed}, sha256 {fingerprint(out)[:16]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
