"""The committed stubs, the services' and facerec-client's, are exactly what `make protos` generates from
protos/ (no drift)."""

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
    # The descriptors with the protos' comments (the gateway's OpenAPI descriptions) drift no more.
    fresh_set = (tmp_path / "facerec" / "v1" / protogen.DESCRIPTORS).read_bytes()
    committed_set = committed_dir / protogen.DESCRIPTORS
    assert committed_set.is_file() and committed_set.read_bytes() == fresh_set, "run `make protos`"
    # facerec-client's copy: the same stubs importing from facerec_client.v1, and the google.rpc details.
    client_dir = protogen.ROOT / protogen.CLIENT_PACKAGE / "v1"
    fresh_client = sorted((tmp_path / protogen.CLIENT_PACKAGE / "v1").glob("*.py*"))
    stub_names = {p.name for p in generated} - {protogen.DESCRIPTORS}
    assert {p.name for p in fresh_client} == stub_names | {protogen.CLIENT_RPC_MODULE}
    for fresh in fresh_client:
        committed = client_dir / fresh.name
        assert committed.is_file(), f"clients/python/.../{fresh.name} is not committed: run `make protos`"
        assert committed.read_text() == fresh.read_text(), (
            f"the client's {fresh.name} drifted: run `make protos`"
        )
    assert "from facerec.v1 " not in (client_dir / "gallery_pb2.py").read_text()
    client_stale = {p.name for p in client_dir.glob("*_pb2*.py*")} - stub_names
    assert not client_stale, f"client stubs with no proto: {sorted(client_stale)}"


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
        "RenameIdentity",
        "GetFacePicture",
        "CreateCollection",
        "GetCollection",
        "ListCollections",
        "DeleteCollection",
        "SetOperatingPoints",
        "Reembed",
        "GetOperation",
    }
    embedder_methods = {m.name for m in embedding_pb2.DESCRIPTOR.services_by_name["Embedder"].methods}
    assert embedder_methods == {"Embed", "GetModelInfo"}
    landmarks = [f.name for f in detector_pb2.Face.DESCRIPTOR.fields_by_name["landmarks"].message_type.fields]
    assert landmarks == ["left_eye", "right_eye", "nose", "mouth_left", "mouth_right"]


def test_every_message_field_enum_value_and_method_of_the_protos_has_a_comment() -> None:
    """The comments are the contract's documentation (the gateway's OpenAPI descriptions come from them)."""
    from facerec.protodoc import comments
    from facerec.v1 import common_pb2, detector_pb2, embedding_pb2, gallery_pb2

    documented = comments()
    missing = []
    for module in (common_pb2, detector_pb2, embedding_pb2, gallery_pb2):
        file = module.DESCRIPTOR
        for message in file.message_types_by_name.values():
            names = [message.full_name, *(f"{message.full_name}.{f.name}" for f in message.fields)]
            missing += [n for n in names if n not in documented]
        for enum in file.enum_types_by_name.values():
            missing += [
                f"{enum.full_name}.{v.name}"
                for v in enum.values
                if f"{enum.full_name}.{v.name}" not in documented
            ]
        for service in file.services_by_name.values():
            missing += [m.full_name for m in service.methods if m.full_name not in documented]
    assert not missing, f"write a comment in protos/ for: {missing}"
    assert documented["facerec.v1.Box.x"] == "Left edge, pixels from the left of the picture, >= 0."
