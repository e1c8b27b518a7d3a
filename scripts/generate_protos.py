"""Regenerate artiload's gRPC modules from its own ``.proto`` files.

Two packages: ``airflow_provider_artiload/buildkit/_proto/`` and
``airflow_provider_artiload/containerd/_proto/``; each is generated on its own
(its own ``-I``), so their files never import each other.

    python scripts/generate_protos.py            # rewrite the committed modules
    python scripts/generate_protos.py --check    # exit 1 if they differ (what CI runs as a test)

Needs grpcio-tools (the ``test`` extra). The generated imports are made
package-relative (``from . import x_pb2``) so the modules live inside the package.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "airflow_provider_artiload"
PROTO_DIR = PACKAGE / "buildkit" / "_proto"
CONTAINERD_PROTO_DIR = PACKAGE / "containerd" / "_proto"
PROTO_DIRS = (PROTO_DIR, CONTAINERD_PROTO_DIR)
_IMPORT = re.compile(r"^import (\w+_pb2) as (\w+)$", re.MULTILINE)


def proto_files(proto_dir: Path = PROTO_DIR) -> list[Path]:
    return sorted(proto_dir.glob("*.proto"))


def generate(out_dir: Path, proto_dir: Path = PROTO_DIR) -> list[Path]:
    """Write ``*_pb2.py`` and ``*_pb2_grpc.py`` for every .proto into ``out_dir``; return the paths."""
    import grpc_tools
    from grpc_tools import protoc

    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    files = proto_files(proto_dir)
    args = [
        "grpc_tools.protoc",
        f"-I{proto_dir}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *(f.name for f in files),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed for {proto_dir}")
    written = []
    for proto in files:
        for suffix in ("_pb2.py", "_pb2_grpc.py"):
            path = out_dir / (proto.stem + suffix)
            text = _IMPORT.sub(r"from . import \1 as \2", path.read_text())
            path.write_text(text)
            written.append(path)
    return written


def drift(proto_dir: Path = PROTO_DIR) -> list[str]:
    """Names of committed modules that differ from a fresh generation (or are missing)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp), proto_dir)
        return [
            p.name
            for p in fresh
            if not (proto_dir / p.name).exists() or (proto_dir / p.name).read_text() != p.read_text()
        ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only report drift")
    args = parser.parse_args(argv)
    if args.check:
        stale = [f"{d.parent.name}/{name}" for d in PROTO_DIRS for name in drift(d)]
        if stale:
            print("stale generated modules: " + ", ".join(stale), file=sys.stderr)
            return 1
        return 0
    for proto_dir in PROTO_DIRS:
        for path in generate(proto_dir, proto_dir):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
