"""Generates the Python gRPC stubs in facerec/v1/ from protos/facerec/v1/*.proto (`make protos`), and
beside them DESCRIPTORS: the four files' descriptors with their source info, i.e. with the protos'
comments, which the runtime descriptors the stubs load do not keep (the gateway documents every field of
its OpenAPI schema from them)."""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PROTO_FILES = ("common", "detector", "embedding", "gallery")
# A google.protobuf.FileDescriptorSet (binary) of PROTO_FILES with source info, no imports.
DESCRIPTORS = "descriptors.binpb"


def generate(out_dir: Path) -> list[Path]:
    """Runs protoc into out_dir (stubs land at out_dir/facerec/v1/). Returns the files written."""
    from grpc_tools import protoc

    out_dir.mkdir(parents=True, exist_ok=True)
    well_known = str(resources.files("grpc_tools") / "_proto")
    sources = [f"facerec/v1/{name}.proto" for name in PROTO_FILES]
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        "--include_source_info",
        f"--descriptor_set_out={out_dir / 'facerec' / 'v1' / DESCRIPTORS}",
        *sources,
    ]
    (out_dir / "facerec" / "v1").mkdir(parents=True, exist_ok=True)
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed on " + ", ".join(sources))
    return [
        *sorted((out_dir / "facerec" / "v1").glob("*_pb2*.py*")),
        out_dir / "facerec" / "v1" / DESCRIPTORS,
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT, help="root folder to write facerec/v1/ under")
    args = parser.parse_args(argv)
    for path in generate(args.out):
        sys.stdout.write(f"{path.relative_to(args.out)}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
