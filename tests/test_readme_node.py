"""The README's Node.js example against an in-process gallery that answers what once crashed it: a
picture with no face (`reply.faces is not iterable`) and a distance of exactly 0 (`undefined.toFixed`),
and the top_k it sends arriving as 3 (it was silently dropped as `top_k` without keepCase). The same
snippet runs against the real services in tests/e2e/test_readme.py."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from facerec.server import Health, ServerOptions, Service
from facerec.server import build_server as build_grpc_server
from facerec.v1 import common_pb2, gallery_pb2, gallery_pb2_grpc
from tests import readme

ROOT = Path(__file__).resolve().parents[1]
NODE_MODULES = ROOT / "examples" / "node" / "node_modules"


class Answers(gallery_pb2_grpc.GalleryServicer):
    """Answers by the picture's bytes; records the top_k each call asked for."""

    def __init__(self) -> None:
        self.top_k: list[int] = []

    def Identify(self, request, context):
        self.top_k.append(request.top_k)
        if request.image.data == b"wall":
            return gallery_pb2.IdentifyResponse()
        if request.image.data == b"tiny":
            return gallery_pb2.IdentifyResponse(
                faces=[
                    gallery_pb2.IdentifiedFace(
                        not_identifiable=gallery_pb2.FACE_TOO_SMALL,
                        not_identifiable_reason="The face is 17x25 px, smaller than the 20 px needed.",
                    )
                ]
            )
        same = gallery_pb2.IdentifiedFace(
            identity="ann",
            known=True,
            distance=0.0,
            candidates=[
                gallery_pb2.Candidate(identity="ann"),
                gallery_pb2.Candidate(identity="bob", distance=1.3),
            ],
            box=common_pb2.Box(width=50, height=60),
        )
        return gallery_pb2.IdentifyResponse(faces=[same])


@pytest.fixture(scope="module")
def gallery() -> Iterator[tuple[str, Answers]]:
    answers = Answers()
    server, port = build_grpc_server(
        [Service("facerec.v1.Gallery", lambda s: gallery_pb2_grpc.add_GalleryServicer_to_server(answers, s))],
        ServerOptions(host="127.0.0.1"),
        Health(["facerec.v1.Gallery"]),
    )
    server.start()
    yield f"127.0.0.1:{port}", answers
    server.stop(0)


def run_snippet(folder: Path, address: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "NODE_PATH": str(NODE_MODULES), "FACEREC_GALLERY": address}
    return subprocess.run(
        ["node", "readme.js", *args], cwd=folder, env=env, capture_output=True, text=True, timeout=60
    )


def test_the_readme_node_example_handles_no_face_a_zero_distance_and_sends_top_k(
    gallery: tuple[str, Answers], tmp_path: Path
) -> None:
    address, answers = gallery
    assert shutil.which("node"), "`make test` installs Node.js (the README's example is tested)"
    assert NODE_MODULES.is_dir(), "run `make node-example` (part of `make test`) to install the packages"
    (snippet,) = readme.blocks("js", readme.section("Calling facerec from another language"))
    (tmp_path / "readme.js").write_text(snippet)
    (tmp_path / "protos").symlink_to(ROOT / "protos")
    for name in ("face.jpg", "wall", "tiny"):
        (tmp_path / name).write_bytes(name.encode() if name != "face.jpg" else b"ann")
    named = run_snippet(tmp_path, address)
    assert (named.returncode, named.stdout, named.stderr) == (0, "ann 0.000 nearest: ann, bob\n", "")
    empty = run_snippet(tmp_path, address, "wall")
    assert (empty.returncode, empty.stdout, empty.stderr) == (0, "no face\n", "")
    tiny = run_snippet(tmp_path, address, "tiny")
    assert tiny.stdout == "not identifiable: The face is 17x25 px, smaller than the 20 px needed.\n"
    assert answers.top_k == [3, 3, 3]
