"""The Gallery service over a CollectionManager, in process on port 0 (real SQLite stores and FAISS,
synthetic faces): every request goes to its collection, the collection RPCs answer as the contract says,
and long-running operations read back as Operation messages."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import numpy as np
import pytest

from facerec.calibration import default_calibration
from facerec.calibration_proto import point_proto
from facerec.server import Health
from facerec.v1 import common_pb2, gallery_pb2, gallery_pb2_grpc
from gallery.collections import CollectionManager
from gallery.config import Settings
from gallery.ports import Contract, FailedFace, OperationRow
from gallery.rows import KeptPicture, NewFace
from gallery.service import SERVICE_NAME, build_server
from tests.support.collections import make_manager
from tests.support.gallery import MODEL, World


class Runner:
    """Stands in for the re-embed runner (gallery/reembed.py): starts operations in the catalog only."""

    def __init__(self, manager: CollectionManager) -> None:
        self.manager = manager

    def start(self, collection: str, target: Contract, drop_failed: bool) -> OperationRow:
        return self.manager.catalog.start_operation(collection, target, drop_failed)

    def get(self, operation_id: str) -> OperationRow:
        return self.manager.catalog.operation(operation_id)


@pytest.fixture
def world() -> World:
    return World(people=3)


@pytest.fixture
def served(tmp_path: Path, world: World) -> Iterator[tuple[gallery_pb2_grpc.GalleryStub, CollectionManager]]:
    manager = make_manager(str(tmp_path / "g.sqlite"), world)
    settings = Settings(
        store=tmp_path / "g.sqlite", calibration_path=tmp_path / "c.json", host="127.0.0.1", port=0
    )
    health = Health([SERVICE_NAME])
    server, port = build_server(settings, manager, health, operations=Runner(manager))
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield gallery_pb2_grpc.GalleryStub(channel), manager
    channel.close()
    server.stop(0)
    manager.close()


def _enroll(
    stub: gallery_pb2_grpc.GalleryStub, collection: str, identity: str, vectors: list[np.ndarray]
) -> None:
    reply = stub.Enroll(
        gallery_pb2.EnrollRequest(
            collection=collection,
            identity=identity,
            embeddings=[common_pb2.Embedding(values=v.tolist()) for v in vectors],
        ),
        timeout=30,
    )
    assert all(r.outcome == gallery_pb2.ENROLLED for r in reply.results), reply


def _code(call, request) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=30)
    return caught.value.code()


def test_requests_go_to_their_collection(served, world: World) -> None:  # type: ignore[no-untyped-def]
    stub, _ = served
    door = stub.CreateCollection(gallery_pb2.CreateCollectionRequest(name="door"), timeout=30)
    assert (door.name, door.contract.model, door.contract.detector, door.contract.alignment, door.state) == (
        "door",
        MODEL,
        "mtcnn",
        "box",
        gallery_pb2.COLLECTION_READY,
    )
    alice = world.names[0]
    _enroll(stub, "door", alice, [world.vectors[i] for i in world.train[alice]])
    probe = common_pb2.Embedding(values=world.vectors[world.val[alice][0]].tolist())

    hits = stub.Search(gallery_pb2.SearchRequest(collection="door", embedding=probe), timeout=30).hits
    assert hits and hits[0].identity == alice
    assert not stub.Search(gallery_pb2.SearchRequest(embedding=probe), timeout=30).hits  # default
    answer = stub.Identify(gallery_pb2.IdentifyRequest(collection="default", embedding=probe), timeout=30)
    assert not answer.faces[0].known
    assert [
        i.identity
        for i in stub.ListIdentities(gallery_pb2.ListIdentitiesRequest(collection="door")).identities
    ] == [alice]
    assert (
        _code(stub.GetIdentity, gallery_pb2.GetIdentityRequest(identity=alice)) == grpc.StatusCode.NOT_FOUND
    )

    stats = stub.Stats(gallery_pb2.StatsRequest(collection="door"), timeout=30)
    assert (stats.collection, stats.faces, stats.contract.model) == ("door", len(world.train[alice]), MODEL)
    assert stub.Stats(gallery_pb2.StatsRequest(), timeout=30).collection == "default"

    missing = gallery_pb2.SearchRequest(collection="nowhere", embedding=probe)
    with pytest.raises(grpc.RpcError) as caught:
        stub.Search(missing, timeout=30)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert caught.value.details() == "There is no collection named 'nowhere'."

    removed = stub.DeleteCollection(gallery_pb2.DeleteCollectionRequest(name="door"), timeout=30)
    assert (removed.identities_removed, removed.faces_removed) == (1, len(world.train[alice]))
    assert (
        _code(stub.Search, gallery_pb2.SearchRequest(collection="door", embedding=probe))
        == grpc.StatusCode.NOT_FOUND
    )


def test_the_collection_rpcs_refuse_what_they_must(served) -> None:  # type: ignore[no-untyped-def]
    stub, _ = served
    stub.CreateCollection(gallery_pb2.CreateCollectionRequest(name="door"), timeout=30)
    cases = [
        (
            stub.CreateCollection,
            gallery_pb2.CreateCollectionRequest(name="door"),
            grpc.StatusCode.ALREADY_EXISTS,
        ),
        (
            stub.CreateCollection,
            gallery_pb2.CreateCollectionRequest(name=""),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            stub.CreateCollection,
            gallery_pb2.CreateCollectionRequest(
                name="x", contract=gallery_pb2.EmbeddingContract(detector="dlib")
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (stub.GetCollection, gallery_pb2.GetCollectionRequest(name="x"), grpc.StatusCode.NOT_FOUND),
        (
            stub.DeleteCollection,
            gallery_pb2.DeleteCollectionRequest(name="default"),
            grpc.StatusCode.FAILED_PRECONDITION,
        ),
        (stub.DeleteCollection, gallery_pb2.DeleteCollectionRequest(name="x"), grpc.StatusCode.NOT_FOUND),
        (
            stub.ListCollections,
            gallery_pb2.ListCollectionsRequest(page_size=-1),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            stub.GetOperation,
            gallery_pb2.GetOperationRequest(name="operations/nope"),
            grpc.StatusCode.NOT_FOUND,
        ),
        (stub.GetOperation, gallery_pb2.GetOperationRequest(name=""), grpc.StatusCode.NOT_FOUND),
    ]
    for call, request, code in cases:
        assert _code(call, request) == code, request
    # The server keeps answering.
    assert stub.GetCollection(gallery_pb2.GetCollectionRequest(name="door"), timeout=30).name == "door"


def test_collections_are_listed_by_pages(served) -> None:  # type: ignore[no-untyped-def]
    stub, _ = served
    for name in ("c", "a", "b"):
        stub.CreateCollection(gallery_pb2.CreateCollectionRequest(name=name), timeout=30)
    seen: list[str] = []
    token = ""
    while True:
        page = stub.ListCollections(
            gallery_pb2.ListCollectionsRequest(page_size=2, page_token=token), timeout=30
        )
        assert len(page.collections) <= 2
        seen += [c.name for c in page.collections]
        token = page.next_page_token
        if not token:
            break
    assert seen == ["a", "b", "c", "default"]


def test_operating_points_are_the_collection_s_and_of_its_model(served) -> None:  # type: ignore[no-untyped-def]
    stub, _ = served
    stub.CreateCollection(gallery_pb2.CreateCollectionRequest(name="door"), timeout=30)
    shipped = default_calibration(MODEL)
    strict = replace(shipped.points[0], name="strict", threshold=0.9)
    request = gallery_pb2.SetOperatingPointsRequest(
        collection="door", model=MODEL, operating_points=[point_proto(strict)], operating_point="strict"
    )
    door = stub.SetOperatingPoints(request, timeout=30)
    assert (door.operating_point, door.threshold_source, round(door.threshold, 4)) == (
        "strict",
        "calibrated",
        0.9,
    )
    assert round(door.identification_threshold, 4) == shipped.identification_threshold
    stats = stub.Stats(gallery_pb2.StatsRequest(collection="door"), timeout=30)
    assert (stats.operating_point, round(stats.threshold, 4)) == ("strict", 0.9)
    assert stub.Stats(gallery_pb2.StatsRequest(), timeout=30).operating_point == shipped.operating_point

    wrong = gallery_pb2.SetOperatingPointsRequest()
    wrong.CopyFrom(request)
    wrong.model = "facenet-keras-128-int8"
    assert _code(stub.SetOperatingPoints, wrong) == grpc.StatusCode.FAILED_PRECONDITION
    unnamed = gallery_pb2.SetOperatingPointsRequest()
    unnamed.CopyFrom(request)
    unnamed.operating_point = "eer"
    assert _code(stub.SetOperatingPoints, unnamed) == grpc.StatusCode.INVALID_ARGUMENT


def test_operations_read_back_as_long_running_operations(served) -> None:  # type: ignore[no-untyped-def]
    stub, manager = served
    stub.CreateCollection(gallery_pb2.CreateCollectionRequest(name="door"), timeout=30)
    started = stub.Reembed(gallery_pb2.ReembedRequest(collection="door", drop_failed=True), timeout=30)
    assert started.name.startswith("operations/") and not started.done
    assert (started.metadata.collection, started.metadata.stage, started.metadata.target.model) == (
        "door",
        "queued",
        MODEL,  # unset fields keep the collection's contract
    )
    door = stub.GetCollection(gallery_pb2.GetCollectionRequest(name="door"), timeout=30)
    assert (door.state, door.operation) == (gallery_pb2.COLLECTION_REEMBEDDING, started.name)
    assert (
        _code(stub.Reembed, gallery_pb2.ReembedRequest(collection="door"))
        == grpc.StatusCode.FAILED_PRECONDITION
    )

    op_id = started.name.removeprefix("operations/")
    claimed = manager.catalog.claim_operation("me", 60_000)
    assert claimed is not None
    manager.catalog.update_operation(
        replace(
            claimed,
            stage="embedding",
            faces_total=2,
            faces_done=1,
            failed=(FailedFace(3, "ann", "No face."),),
        )
    )
    running = stub.GetOperation(gallery_pb2.GetOperationRequest(name=started.name), timeout=30)
    assert (running.metadata.faces_done, running.metadata.faces_total) == (1, 2)
    assert [(f.face_id, f.identity, f.reason) for f in running.metadata.failed_faces] == [
        (3, "ann", "No face.")
    ]

    manager.catalog.finish_operation(op_id, "1 face could not be re-embedded.", "FAILED_PRECONDITION")
    failed = stub.GetOperation(gallery_pb2.GetOperationRequest(name=started.name), timeout=30)
    assert failed.done and not failed.HasField("response")
    assert (failed.error.code, failed.error.message) == (
        grpc.StatusCode.FAILED_PRECONDITION.value[0],
        "1 face could not be re-embedded.",
    )

    again = stub.Reembed(gallery_pb2.ReembedRequest(collection="door"), timeout=30)
    manager.catalog.switch(again.name.removeprefix("operations/"))
    manager.catalog.finish_operation(again.name.removeprefix("operations/"))
    done = stub.GetOperation(gallery_pb2.GetOperationRequest(name=again.name), timeout=30)
    assert done.done and not done.HasField("error") and done.response.name == "door"


def test_identities_are_renamed_and_kept_pictures_served_per_collection(served, world: World) -> None:  # type: ignore[no-untyped-def]
    stub, manager = served
    stub.CreateCollection(gallery_pb2.CreateCollectionRequest(name="door"), timeout=30)
    alice, bob = world.names[:2]
    _enroll(stub, "door", bob, [world.vectors[world.train[bob][0]]])
    kept = KeptPicture(b"\xff\xd8picture-bytes", "image/jpeg", 320, 320, (80.0, 80.0, 160.0, 160.0))
    # A face with a kept picture, as an enrolment from a picture stores it (store, then index).
    storage, vector = manager.storage("door"), world.vectors[world.train[alice][0]]
    with storage.write_lock:
        (face_id,) = storage.store.add_faces(alice, [NewFace(vector, "sha-a", (1.0, 2.0, 3.0, 4.0), kept)])
        storage.index.add(np.array([face_id], np.int64), vector[None])

    picture = stub.GetFacePicture(
        gallery_pb2.GetFacePictureRequest(collection="door", face_id=face_id), timeout=30
    )
    assert (picture.face_id, picture.data, picture.media_type, picture.width, picture.box.width) == (
        face_id,
        kept.data,
        "image/jpeg",
        320,
        160.0,
    )
    shown = stub.GetIdentity(
        gallery_pb2.GetIdentityRequest(collection="door", identity=alice, include_pictures=True), timeout=30
    )
    assert shown.faces[0].has_picture and shown.faces[0].picture.data == kept.data
    plain = stub.GetIdentity(gallery_pb2.GetIdentityRequest(collection="door", identity=alice), timeout=30)
    assert plain.faces[0].has_picture and not plain.faces[0].HasField("picture")
    # The face is door's: the default collection has no such face.
    assert (
        _code(stub.GetFacePicture, gallery_pb2.GetFacePictureRequest(face_id=face_id))
        == grpc.StatusCode.NOT_FOUND
    )
    bob_face = stub.GetIdentity(
        gallery_pb2.GetIdentityRequest(collection="door", identity=bob), timeout=30
    ).faces[0]
    assert not bob_face.has_picture  # enrolled as an embedding
    no_picture = gallery_pb2.GetFacePictureRequest(collection="door", face_id=bob_face.face_id)
    assert _code(stub.GetFacePicture, no_picture) == grpc.StatusCode.NOT_FOUND

    renamed = stub.RenameIdentity(
        gallery_pb2.RenameIdentityRequest(collection="door", identity=alice, new_name="Alice B."), timeout=30
    )
    assert (renamed.identity.identity, renamed.identity.face_count) == ("Alice B.", 1)
    probe = common_pb2.Embedding(values=world.vectors[world.train[alice][0]].tolist())
    hits = stub.Search(gallery_pb2.SearchRequest(collection="door", embedding=probe), timeout=30).hits
    assert hits[0].identity == "Alice B."
    taken = gallery_pb2.RenameIdentityRequest(collection="door", identity="Alice B.", new_name=bob)
    assert _code(stub.RenameIdentity, taken) == grpc.StatusCode.ALREADY_EXISTS
    unknown = gallery_pb2.RenameIdentityRequest(collection="door", identity=alice, new_name="x")
    assert _code(stub.RenameIdentity, unknown) == grpc.StatusCode.NOT_FOUND
    elsewhere = gallery_pb2.RenameIdentityRequest(identity="Alice B.", new_name="y")
    assert _code(stub.RenameIdentity, elsewhere) == grpc.StatusCode.NOT_FOUND


def test_an_identitys_faces_come_in_bounded_pages_and_every_face_and_picture_is_reached(
    served, world: World
) -> None:  # type: ignore[no-untyped-def]
    """More faces than a page holds (1000) and more kept pictures than a page with pictures holds (32):
    each answer stays within its page, and following the tokens reaches every face and every picture."""
    stub, manager = served
    stub.CreateCollection(gallery_pb2.CreateCollectionRequest(name="many"), timeout=30)
    storage, alice = manager.storage("many"), world.names[0]
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(1003, len(world.vectors[0]))).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    kept = [
        KeptPicture(b"\xff\xd8face-%d" % i, "image/jpeg", 320, 320, (80.0, 80.0, 160.0, 160.0))
        for i in range(40)
    ]
    faces = [
        NewFace(v, f"sha-{i}", (1.0, 2.0, 3.0, 4.0), kept[i] if i < 40 else None)
        for i, v in enumerate(vectors)
    ]
    with storage.write_lock:
        ids = storage.store.add_faces(alice, faces)
        storage.index.add(np.array(ids, np.int64), vectors)

    def pages(**fields: object) -> list[gallery_pb2.GetIdentityResponse]:
        got, token = [], ""
        while True:
            request = gallery_pb2.GetIdentityRequest(
                collection="many", identity=alice, page_token=token, **fields
            )
            got.append(stub.GetIdentity(request, timeout=30))
            token = got[-1].next_page_token
            if not token:
                return got

    with_pictures = pages(include_pictures=True)
    assert [len(p.faces) for p in with_pictures] == [32] * 31 + [11]
    assert {p.identity.face_count for p in with_pictures} == {1003}
    assert [f.face_id for p in with_pictures for f in p.faces] == ids
    pictured = {f.face_id: f.picture.data for p in with_pictures for f in p.faces if f.HasField("picture")}
    assert pictured == {ids[i]: kept[i].data for i in range(40)}

    plain = pages(include_embeddings=True)
    assert [len(p.faces) for p in plain] == [1000, 3] and not plain[0].faces[40].has_picture
    assert np.allclose([f.embedding.values for p in plain for f in p.faces], vectors)
    assert [len(p.faces) for p in pages(page_size=400)] == [400, 400, 203]

    refused = [
        gallery_pb2.GetIdentityRequest(
            collection="many", identity=alice, include_pictures=True, page_size=33
        ),
        gallery_pb2.GetIdentityRequest(collection="many", identity=alice, page_size=1001),
        gallery_pb2.GetIdentityRequest(collection="many", identity=alice, page_size=-1),
        gallery_pb2.GetIdentityRequest(collection="many", identity=alice, page_token="not a token"),
        # A ListIdentities token names an identity, not a face.
        gallery_pb2.GetIdentityRequest(collection="many", identity=alice, page_token="YWxpY2U="),
    ]
    for request in refused:
        assert _code(stub.GetIdentity, request) == grpc.StatusCode.INVALID_ARGUMENT, request
    assert stub.GetIdentity(
        gallery_pb2.GetIdentityRequest(collection="many", identity=alice), timeout=30
    ).faces
