"""The committed stubs are exactly what `make protos` generates from protos/ (no drift)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from facerec import protogen


def test_committed_stubs_match_a_fresh_generation(tmp_path: Path) -> None:
    # protoc runs in its own process: in a process that has loaded TensorFlow it can crash (two protobufs).
    subprocess.run(
        [sys.executable, "-m", "facerec.protogen", "--out", str(tmp_path)], check=True, timeout=120
    )
    generated = sorted((tmp_path / "facerec" / "v1").glob("*_pb2*.py*"))
    assert len(generated) == 12
    committed_dir = protogen.ROOT / "facerec" / "v1"
    for fresh in generated:
        committed = committed_dir / fresh.name
        assert committed.is_file(), f"{fresh.name} is generated but not committed: run `make protos`"
        assert committed.read_text() == fresh.read_text(), f"{fresh.name} drifted: run `make protos`"
    stale = {p.name for p in committed_dir.glob("*_pb2*.py*")} - {p.name for p in generated}
    assert not stale, f"stubs with no proto: {sorted(stale)}"


def test_contract_names_are_kept() -> None:
    from facerec.v1 import detector_pb2, embedding_pb2, gallery_pb2

    assert detector_pb2.DESCRIPTOR.package == "facerec.v1"
    gallery_methods = {m.name for m in gallery_pb2.DESCRIPTOR.services_by_name["Gallery"].methods}
    assert gallery_methods == {
        "Enroll",
        "Identify",
        "Verify",
        "Search",
        "ListIdentities",
        "GetIdentity",
        "RemoveIdentity",
        "RemoveFace",
        "Train",
        "Stats",
        "Represent",
    }
    embedder_methods = {m.name for m in embedding_pb2.DESCRIPTOR.services_by_name["Embedder"].methods}
    assert embedder_methods == {"Embed", "GetModelInfo"}
    landmarks = [f.name for f in detector_pb2.Face.DESCRIPTOR.fields_by_name["landmarks"].message_type.fields]
    assert landmarks == ["left_eye", "right_eye", "nose", "mouth_left", "mouth_right"]
