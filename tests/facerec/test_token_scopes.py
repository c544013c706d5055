"""Tokens per collection (facerec.security): the `TOKEN ROLE [COLLECTIONS]` entries, older files keeping
their meaning, and the gRPC interceptor on a real gallery server (port 0, real SQLite stores, synthetic
faces): a scoped token uses only its collections, lists only those, and only admin tokens create, delete
and re-embed collections or store their points."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from facerec import security
from facerec.calibration import default_calibration
from facerec.calibration_proto import point_proto
from facerec.channels import open_channel
from facerec.security import Grant
from facerec.server import Health
from facerec.settings import SettingError
from facerec.v1 import common_pb2, gallery_pb2, gallery_pb2_grpc
from gallery.collections import CollectionManager
from gallery.config import Settings
from gallery.service import SERVICE_NAME, WRITE_METHODS, build_server
from tests.gallery.test_service_collections import Runner
from tests.support.collections import make_manager
from tests.support.gallery import MODEL, World

ADMIN = "admin-token-0123456789abcdef"
RW = "rw-token-0123456789abcdef"
RO_A = "ro-a-token-0123456789abcdef"
RW_A = "rw-a-token-0123456789abcdef"


def test_older_entries_keep_their_meaning() -> None:
    assert security.parse_grants(f"# who\n{RW} rw\n\n{RO_A} ro  # the dashboard\n", "F") == {
        RW: Grant("rw"),
        RO_A: Grant("ro"),
    }
    assert security.parse_grants(f"{RW} rw, {RO_A} ro,", "TOKENS") == {RW: Grant("rw"), RO_A: Grant("ro")}
    assert security.parse_tokens(f"{RW} rw,{RO_A} ro", "TOKENS") == {RW: "rw", RO_A: "ro"}


def test_entries_name_their_collections() -> None:
    text = f"{ADMIN} admin\n{RW} rw *\n{RO_A} ro door, front hall ,archive # the kiosk\n{RW_A} rw door"
    grants = security.parse_grants(text, "F")
    assert grants == {
        ADMIN: Grant("admin"),
        RW: Grant("rw"),
        RO_A: Grant("ro", frozenset({"door", "front hall", "archive"})),
        RW_A: Grant("rw", frozenset({"door"})),
    }
    assert grants[RO_A].may_use("door") and not grants[RO_A].may_use("default")
    assert not grants[RO_A].may_use("") and grants[RW].may_use("")  # "" is default
    inline = security.parse_grants(f"{RO_A} ro door,archive; {ADMIN} admin", "TOKENS")
    assert inline == {RO_A: Grant("ro", frozenset({"door", "archive"})), ADMIN: Grant("admin")}


@pytest.mark.parametrize(
    "text",
    [
        f"{RO_A} ro door, {RW} rw",  # an entry after a scoped one must be on its own line or after ;
        f"{RO_A} ro door,*",
        f"{RO_A} root door",
        f"{RO_A}",
        "short ro door",
    ],
)
def test_entries_that_cannot_be_read_one_way_are_refused(text: str) -> None:
    with pytest.raises(SettingError, match="Entry 1 of TOKENS"):
        security.parse_grants(text, "TOKENS")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, CollectionManager]]:
    manager = make_manager(str(tmp_path / "g.sqlite"), World(people=2))
    manager.create("a", manager.defaults)
    manager.create("b", manager.defaults)
    settings = Settings(
        store=tmp_path / "g.sqlite", calibration_path=tmp_path / "c.json", host="127.0.0.1", port=0
    )
    tokens = f"{ADMIN} admin\n{RW} rw\n{RO_A} ro a\n{RW_A} rw a"
    interceptors = security.token_interceptor("", tokens, WRITE_METHODS)
    server, port = build_server(
        settings, manager, Health([SERVICE_NAME]), interceptors, operations=Runner(manager)
    )
    server.start()
    yield f"127.0.0.1:{port}", manager
    server.stop(0)
    manager.close()


def _call(target: str, token: str, method: str, request) -> grpc.RpcError | object:  # type: ignore[no-untyped-def]
    with open_channel(target, token=token) as channel:
        try:
            return getattr(gallery_pb2_grpc.GalleryStub(channel), method)(request, timeout=30)
        except grpc.RpcError as exc:
            return exc


def _denied(answer: object, collection: str | None = None) -> bool:
    if not isinstance(answer, grpc.RpcError) or answer.code() != grpc.StatusCode.PERMISSION_DENIED:
        return False
    return collection is None or answer.details() == f"This token may not use collection {collection!r}."


def test_a_scoped_token_uses_its_collections_alone(served: tuple[str, CollectionManager]) -> None:
    target, _ = served
    probe = common_pb2.Embedding(values=[1.0] + [0.0] * 127)
    enroll = gallery_pb2.EnrollRequest(identity="ann", embeddings=[probe])
    assert not isinstance(
        _call(
            target,
            RW_A,
            "Enroll",
            gallery_pb2.EnrollRequest(collection="a", identity="ann", embeddings=[probe]),
        ),
        grpc.RpcError,
    )
    assert _denied(_call(target, RW_A, "Enroll", enroll), "default")
    enroll.collection = "b"
    assert _denied(_call(target, RW_A, "Enroll", enroll), "b")

    search_a = gallery_pb2.SearchRequest(collection="a", embedding=probe)
    assert [h.identity for h in _call(target, RO_A, "Search", search_a).hits] == ["ann"]  # type: ignore[attr-defined]
    assert _denied(
        _call(target, RO_A, "Search", gallery_pb2.SearchRequest(collection="b", embedding=probe)), "b"
    )
    assert _denied(_call(target, RO_A, "Stats", gallery_pb2.StatsRequest()), "default")
    assert _denied(_call(target, RO_A, "GetCollection", gallery_pb2.GetCollectionRequest(name="b")), "b")
    assert _call(target, RO_A, "GetCollection", gallery_pb2.GetCollectionRequest(name="a")).name == "a"  # type: ignore[attr-defined]
    # Read-only stays read-only within its scope.
    assert _denied(
        _call(
            target,
            RO_A,
            "Enroll",
            gallery_pb2.EnrollRequest(collection="a", identity="x", embeddings=[probe]),
        )
    )
    listed = _call(target, RO_A, "ListCollections", gallery_pb2.ListCollectionsRequest())
    assert [c.name for c in listed.collections] == ["a"]  # type: ignore[attr-defined]
    everything = _call(target, RW, "ListCollections", gallery_pb2.ListCollectionsRequest())
    assert [c.name for c in everything.collections] == ["a", "b", "default"]  # type: ignore[attr-defined]


def test_only_admin_tokens_create_delete_reembed_and_set_points(
    served: tuple[str, CollectionManager],
) -> None:
    target, _ = served
    create = gallery_pb2.CreateCollectionRequest(name="c")
    points = gallery_pb2.SetOperatingPointsRequest(
        collection="a",
        model=MODEL,
        operating_points=[point_proto(default_calibration(MODEL).points[0])],
        operating_point=default_calibration(MODEL).points[0].name,
    )
    for token in (RW, RW_A, RO_A):
        assert _denied(_call(target, token, "CreateCollection", create))
        assert _denied(
            _call(target, token, "DeleteCollection", gallery_pb2.DeleteCollectionRequest(name="a"))
        )
        assert _denied(_call(target, token, "Reembed", gallery_pb2.ReembedRequest(collection="a")))
        assert _denied(_call(target, token, "SetOperatingPoints", points))
    assert _call(target, ADMIN, "CreateCollection", create).name == "c"  # type: ignore[attr-defined]
    assert _call(target, ADMIN, "SetOperatingPoints", points).name == "a"  # type: ignore[attr-defined]
    op = _call(target, ADMIN, "Reembed", gallery_pb2.ReembedRequest(collection="b"))
    name = op.name  # type: ignore[attr-defined]
    # An operation on b is b's: a token scoped to a may not read it.
    assert _denied(_call(target, RO_A, "GetOperation", gallery_pb2.GetOperationRequest(name=name)), "b")
    assert _call(target, RW, "GetOperation", gallery_pb2.GetOperationRequest(name=name)).name == name  # type: ignore[attr-defined]
    assert not isinstance(
        _call(target, ADMIN, "DeleteCollection", gallery_pb2.DeleteCollectionRequest(name="c")), grpc.RpcError
    )


def test_a_file_s_lines_are_its_entries_so_its_tokens_may_hold_semicolons(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("semi;colon-token-0123456789 ro door\n")
    assert security.load_grants(str(path)) == {
        "semi;colon-token-0123456789": Grant("ro", frozenset({"door"}))
    }
