"""Collections through real gallery processes (faces enrolled as embeddings; the detector and the embedder
are dead addresses): tokens scoped to collections on a SQLite gallery, and two replicas on one real
PostgreSQL database seeing each other's collections, their deletion and their operating points within a
bounded wait (the follower's bound is ~0.5 s; the wait is tests.support.replicas.SEEN_WITHIN_S)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from facerec.calibration import default_calibration
from facerec.calibration_proto import point_proto
from facerec.channels import open_channel
from facerec.v1 import common_pb2, gallery_pb2, gallery_pb2_grpc
from tests.support.replicas import MODEL, Replica, start_replica, unit_vectors, wait_until

ADMIN = "e2e-admin-token-0123456789"
RW = "e2e-rw-token-0123456789"
RO_A = "e2e-ro-a-token-0123456789"
OLD_RW = "e2e-old-rw-token-0123456789"
OLD_RO = "e2e-old-ro-token-0123456789"


def _embeddings(vectors: np.ndarray) -> list[common_pb2.Embedding]:
    return [common_pb2.Embedding(values=v.tolist()) for v in vectors]


def _call(address: str, token: str, method: str, request):  # type: ignore[no-untyped-def]
    with open_channel(address, token=token) as channel:
        try:
            return getattr(gallery_pb2_grpc.GalleryStub(channel), method)(request, timeout=30)
        except grpc.RpcError as exc:
            return exc


def _denied(answer: object) -> str:
    assert isinstance(answer, grpc.RpcError), answer
    assert answer.code() == grpc.StatusCode.PERMISSION_DENIED, answer
    return str(answer.details())


def test_tokens_scoped_to_collections_on_a_real_gallery(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    # An older line (comma-separated entries, no collections) beside the new ones.
    tokens.write_text(f"{OLD_RW} rw, {OLD_RO} ro\n{ADMIN} admin\n{RW} rw *\n{RO_A} ro a  # the kiosk\n")
    service = start_replica(str(tmp_path / "g.sqlite"), tmp_path, ["--tokens-file", str(tokens)])
    try:
        at = service.address
        assert _denied(_call(at, RW, "CreateCollection", gallery_pb2.CreateCollectionRequest(name="a")))
        for name in ("a", "b"):
            made = _call(at, ADMIN, "CreateCollection", gallery_pb2.CreateCollectionRequest(name=name))
            assert made.name == name and made.contract.model == MODEL
        vectors = unit_vectors(2, seed=3)
        for name, vector in (("a", vectors[0]), ("b", vectors[1])):
            request = gallery_pb2.EnrollRequest(
                collection=name, identity="ann", embeddings=_embeddings(vector[None])
            )
            assert _call(at, RW, "Enroll", request).results[0].outcome == gallery_pb2.ENROLLED

        probe = _embeddings(vectors[0][None])[0]
        hits = _call(at, RO_A, "Search", gallery_pb2.SearchRequest(collection="a", embedding=probe)).hits
        assert [h.identity for h in hits] == ["ann"]
        on_b = _call(at, RO_A, "Search", gallery_pb2.SearchRequest(collection="b", embedding=probe))
        assert _denied(on_b) == "This token may not use collection 'b'."
        write = gallery_pb2.EnrollRequest(collection="a", identity="eve", embeddings=[probe])
        assert _denied(_call(at, RO_A, "Enroll", write)).startswith("A read-only token may not call")
        listed = _call(at, RO_A, "ListCollections", gallery_pb2.ListCollectionsRequest())
        assert [c.name for c in listed.collections] == ["a"]

        # The older entries mean what they meant: every collection, rw and ro.
        assert _call(at, OLD_RO, "Stats", gallery_pb2.StatsRequest(collection="b")).faces == 1
        assert _denied(_call(at, OLD_RO, "Enroll", write))
        assert _call(at, OLD_RW, "Enroll", write).results[0].outcome == gallery_pb2.ENROLLED
        assert _denied(_call(at, OLD_RW, "DeleteCollection", gallery_pb2.DeleteCollectionRequest(name="b")))
        assert (
            _call(at, ADMIN, "DeleteCollection", gallery_pb2.DeleteCollectionRequest(name="b")).faces_removed
            == 1
        )
    finally:
        service.stop()


@pytest.fixture
def pair(postgres_url: str, tmp_path: Path) -> Iterator[tuple[Replica, Replica]]:
    a = Replica(start_replica(postgres_url, tmp_path))
    try:
        b = Replica(start_replica(postgres_url, tmp_path))
    except BaseException:
        a.close()
        raise
    yield a, b
    a.close()
    b.close()


def _code(call) -> grpc.StatusCode | None:  # type: ignore[no-untyped-def]
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code()
    return None


def test_two_replicas_see_collections_come_and_go_and_serve_the_same_points(
    pair: tuple[Replica, Replica],
) -> None:
    one, two = pair
    one.stub.CreateCollection(gallery_pb2.CreateCollectionRequest(name="door"), timeout=30)
    vectors = unit_vectors(3, seed=11)
    enroll = gallery_pb2.EnrollRequest(collection="door", identity="ann", embeddings=_embeddings(vectors))

    def enrolled_on_two() -> bool:
        try:
            return two.stub.Enroll(enroll, timeout=30).results[0].outcome == gallery_pb2.ENROLLED
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.NOT_FOUND, exc
            return False

    wait_until(enrolled_on_two, "a collection created through one replica usable on the other")
    search = gallery_pb2.SearchRequest(collection="door", embedding=_embeddings(vectors[:1])[0])
    wait_until(lambda: bool(one.stub.Search(search, timeout=30).hits), "faces enrolled through the other")
    assert not one.stub.Search(gallery_pb2.SearchRequest(embedding=search.embedding), timeout=30).hits

    shipped = default_calibration(MODEL)
    strict = point_proto(shipped.points[0])
    strict.name, strict.threshold = "strict", 0.9
    ident = point_proto(shipped.identification)  # type: ignore[arg-type]
    ident.threshold = 0.8
    one.stub.SetOperatingPoints(
        gallery_pb2.SetOperatingPointsRequest(
            collection="door",
            model=MODEL,
            operating_points=[strict],
            operating_point="strict",
            identification_point=ident,
        ),
        timeout=30,
    )
    stats = gallery_pb2.StatsRequest(collection="door")
    wait_until(
        lambda: two.stub.Stats(stats, timeout=30).operating_point == "strict", "points set on the other"
    )
    served = two.stub.Stats(stats, timeout=30)
    assert (round(served.threshold, 4), round(served.identification_threshold, 4)) == (0.9, 0.8)
    identify = gallery_pb2.IdentifyRequest(collection="door", embedding=search.embedding)
    assert round(two.stub.Identify(identify, timeout=30).threshold, 4) == 0.8
    # Verify on the other replica knows the point by name (it then needs the detector, which is down here:
    # UNAVAILABLE, where an unknown point is INVALID_ARGUMENT before any picture is looked at).
    verify = gallery_pb2.VerifyRequest(
        collection="door", image_a=common_pb2.Image(data=b"x"), identity="ann", operating_point="strict"
    )
    assert _code(lambda: two.stub.Verify(verify, timeout=30)) != grpc.StatusCode.INVALID_ARGUMENT
    verify.collection = ""
    assert _code(lambda: two.stub.Verify(verify, timeout=30)) == grpc.StatusCode.INVALID_ARGUMENT

    one.stub.DeleteCollection(gallery_pb2.DeleteCollectionRequest(name="door"), timeout=30)
    wait_until(
        lambda: _code(lambda: two.stub.Search(search, timeout=30)) == grpc.StatusCode.NOT_FOUND,
        "a collection deleted through one replica gone from the other",
    )
