"""Two gallery processes on one PostgreSQL store sharing one Milvus index (a real milvus-lite server, and
the real Milvus standalone server): a collection made through one is served by both from its own Milvus
collection, which its deletion drops;
one index for both, Identify UNAVAILABLE (one sentence) while Milvus is down, and the reconciler's
catch-up once it is back: faces enrolled and removed during the outage are searchable / gone."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest

from facerec.v1 import common_pb2, gallery_pb2
from tests.support.engines import MilvusLiteServer, MilvusStandaloneServer, milvus_collection_names
from tests.support.replicas import Replica, identified_as, start_replica, unit_vectors, wait_until


@pytest.fixture(params=["lite", "standalone"])
def milvus(request: pytest.FixtureRequest) -> Iterator[MilvusLiteServer | MilvusStandaloneServer]:
    """A server of this test's own, of each engine: the test stops it."""
    server = MilvusLiteServer() if request.param == "lite" else MilvusStandaloneServer()
    yield server
    server.close()


@pytest.fixture
def pair(
    postgres_url: str, milvus: MilvusLiteServer | MilvusStandaloneServer, tmp_path: Path
) -> Iterator[tuple[Replica, Replica]]:
    with replicas(postgres_url, tmp_path, ["--index", milvus.uri]) as both:
        yield both


@contextmanager
def replicas(postgres_url: str, tmp_path: Path, index: list[str]) -> Iterator[tuple[Replica, Replica]]:
    """Two replicas on the store at postgres_url and the Milvus index named by index (gallery flags)."""
    extra = [*index, "--index-type", "FLAT"]
    a = Replica(start_replica(postgres_url, tmp_path, extra))
    try:
        b = Replica(start_replica(postgres_url, tmp_path, extra))
    except BaseException:
        a.close()
        raise
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def test_replicas_share_one_milvus_index_and_it_catches_up_after_an_outage(
    pair: tuple[Replica, Replica], milvus: MilvusLiteServer | MilvusStandaloneServer
) -> None:
    a, b = pair
    v = unit_vectors(4, seed=5)
    (alice,) = a.enroll("alice", v[:1])
    # One shared index: B finds A's face (no change log to follow for the index), as soon as Milvus's
    # query node has it (B reads at Session consistency: A's own reads would see it at once).
    assert identified_as(a, v[0]) == "alice"
    wait_until(lambda: _identified(b, v[0]) == "alice", "alice, enrolled through A, found through B")
    wait_until(lambda: b.stats().index_size == 1, "B's count of the shared index")  # counts are cached 1 s
    assert b.stats().index_kind == "milvus"

    milvus.stop()
    with pytest.raises(grpc.RpcError) as refused:
        b.identify(v[0])
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert re.fullmatch(r"The Milvus index at http://\S+ cannot be reached\.", refused.value.details())
    # The store is the truth: enrolls and removals are acknowledged meanwhile, Milvus is told later.
    a.enroll("bob", v[1:2])
    b.stub.RemoveFace(gallery_pb2.RemoveFaceRequest(face_id=alice), timeout=30)
    # The server keeps answering what needs no index.
    assert {
        i.identity for i in a.stub.ListIdentities(gallery_pb2.ListIdentitiesRequest(), timeout=30).identities
    } == {"bob"}

    milvus.start()
    wait_until(lambda: _identified(b, v[1]) == "bob", "bob, enrolled during the outage, searchable after it")
    # (Identify never answers a removed face anyway: ids are checked against the store; the count is
    # Milvus's own, so this shows the reconciler deleted it there.)
    wait_until(lambda: _index_size(a) == 1, "alice's face, removed during the outage, gone from Milvus")
    assert _identified(a, v[0]) == ""


def _index_size(replica: Replica) -> int:
    """Stats' index size, with UNAVAILABLE (this replica's Milvus client still reconnecting) as -1."""
    try:
        return int(replica.stats().index_size)
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.UNAVAILABLE:
            raise
        return -1


def _identified(replica: Replica, vector) -> str:
    """identified_as, with UNAVAILABLE (the index still reconnecting) as "not yet"."""
    try:
        return identified_as(replica, vector)
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.UNAVAILABLE:
            raise
        return "<unavailable>"


@pytest.fixture(params=["lite", "standalone"])
def shared(
    request: pytest.FixtureRequest, postgres_url: str, tmp_path: Path
) -> Iterator[tuple[Replica, Replica, str, str]]:
    """Two replicas on the session's server of each engine (started once: ~14 s for the standalone one),
    under a base collection name of this test's own; this test stops no server. Yields the replicas, the
    server's URI and the base name."""
    uri = request.getfixturevalue(f"milvus_{request.param}_server").uri
    base = "t_" + uuid.uuid4().hex[:12]
    with replicas(postgres_url, tmp_path, ["--index", uri, "--index-collection", base]) as (a, b):
        yield a, b, uri, base


def test_replicas_share_a_collections_own_milvus_collection_until_it_is_deleted(
    shared: tuple[Replica, Replica, str, str],
) -> None:
    one, two, uri, base = shared
    one.stub.CreateCollection(gallery_pb2.CreateCollectionRequest(name="door"), timeout=30)
    v = unit_vectors(3, seed=7)
    enroll = gallery_pb2.EnrollRequest(
        collection="door", identity="ann", embeddings=[common_pb2.Embedding(values=list(x)) for x in v]
    )

    def enrolled_on_two() -> bool:
        try:
            return two.stub.Enroll(enroll, timeout=30).results[0].outcome == gallery_pb2.ENROLLED
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.NOT_FOUND, exc
            return False

    wait_until(enrolled_on_two, "a collection created through one replica usable on the other")
    search = gallery_pb2.SearchRequest(collection="door", embedding=common_pb2.Embedding(values=list(v[0])))
    wait_until(lambda: bool(one.stub.Search(search, timeout=30).hits), "faces enrolled through the other")
    # The default collection's index never holds them.
    assert not one.stub.Search(gallery_pb2.SearchRequest(embedding=search.embedding), timeout=30).hits
    assert {base, f"{base}_c2_g1"} <= milvus_collection_names(uri)
    one.stub.DeleteCollection(gallery_pb2.DeleteCollectionRequest(name="door"), timeout=60)
    assert f"{base}_c2_g1" not in milvus_collection_names(uri)
    wait_until(
        lambda: _not_found(lambda: two.stub.Search(search, timeout=30)),
        "a collection deleted through one replica gone from the other",
    )
    assert identified_as(two, v[0]) == ""  # nor in the default collection


def _not_found(call) -> bool:  # type: ignore[no-untyped-def]
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code() == grpc.StatusCode.NOT_FOUND
    return False
