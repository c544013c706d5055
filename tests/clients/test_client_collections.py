"""facerec_client's collections: every call names its collection (the call's, else the client's, else
"" = default; the one-liners read FACEREC_COLLECTION), the collections' calls answer typed dataclasses,
wait_operation polls an operation to its end, and AsyncGallery does the same; against an in-process
gallery that records what it is sent (the real services: tests/e2e), and identity() reading every page of a
real in-process gallery."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

import facerec_client
from facerec.server import Health
from gallery.config import Settings
from gallery.rows import KeptPicture, NewFace
from gallery.service import SERVICE_NAME, build_server
from tests.support.collections import make_manager
from tests.support.gallery import World
from tests.support.recorded_gallery import Recorded, recorded_gallery


@pytest.fixture
def gallery() -> Iterator[tuple[Recorded, str]]:
    with recorded_gallery() as served:
        yield served


def collections_sent(servicer: Recorded) -> list[tuple[str, str]]:
    return [(method, request.collection) for method, request in servicer.sent]


def test_every_call_works_on_the_calls_collection_else_the_clients_else_default(
    gallery: tuple[Recorded, str],
) -> None:
    servicer, address = gallery
    with facerec_client.Gallery(address) as plain:
        plain.identify(b"p")
        plain.identify(b"p", collection="archive")
    with facerec_client.Gallery(address, collection="door") as door:
        door.identify(b"p")
        door.enroll("ann", [b"a"])
        door.verify(b"a", b"b", collection="archive")
        door.identities()
        door.identity("ann")
        door.remove_face(3)
        assert door.stats().collection == "door"
        door.rename_identity("ann", "Ann")
        door.face_picture(3, collection="")
    assert collections_sent(servicer) == [
        ("Identify", ""),
        ("Identify", "archive"),
        ("Identify", "door"),
        ("Enroll", "door"),
        ("Verify", "archive"),
        ("ListIdentities", "door"),
        ("GetIdentity", "door"),
        ("RemoveFace", "door"),
        ("Stats", "door"),
        ("RenameIdentity", "door"),
        ("GetFacePicture", ""),
    ]


def test_the_one_liners_read_facerec_collection(
    gallery: tuple[Recorded, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    servicer, address = gallery
    monkeypatch.setenv("FACEREC_GALLERY", address)
    monkeypatch.setenv("FACEREC_COLLECTION", "door")
    rgb = np.zeros((8, 8, 3), dtype=np.uint8)
    facerec_client.identify(rgb)
    facerec_client.enroll("ann", [b"a"])
    facerec_client.verify(b"a", b"b", collection="archive")
    assert collections_sent(servicer) == [("Identify", "door"), ("Enroll", "door"), ("Verify", "archive")]


def test_collections_are_created_listed_got_and_deleted_as_dataclasses(gallery: tuple[Recorded, str]) -> None:
    servicer, address = gallery
    with facerec_client.Gallery(address) as client:
        made = client.create_collection(
            "archive", model="facenet-keras-128-int8", detector="retinaface", keep_source_pictures=True
        )
        assert made == client.create_collection("archive", model="facenet-keras-128-int8")
        assert (
            isinstance(made, facerec_client.Collection) and made.state is facerec_client.CollectionState.READY
        )
        assert made.contract == facerec_client.Contract("mtcnn", "similarity", "facenet-keras-128-int8")
        assert made.operating_points[0].name == "far_1e-3" and made.faces_without_picture == 1
        sent = servicer.sent[0][1]
        assert (sent.contract.detector, sent.contract.alignment, sent.keep_source_pictures) == (
            "retinaface",
            "",
            True,
        )
        with pytest.raises(facerec_client.AlreadyExists, match="exists already"):
            client.create_collection("taken")
        assert [c.name for c in client.list_collections(page_size=1)] == ["archive", "default"]
        assert client.get_collection("archive").name == "archive"
        assert client.get_collection().name == "default"
        assert client.delete_collection("archive") == facerec_client.CollectionRemoved(2, 5)


def test_a_faces_picture_and_the_pictures_of_an_identity(gallery: tuple[Recorded, str]) -> None:
    servicer, address = gallery
    with facerec_client.Gallery(address) as client:
        picture = client.face_picture(3)
        assert (picture.media_type, picture.data, picture.width) == ("image/webp", b"RIFFwebp", 160)
        ann = client.identity("ann", include_pictures=True)
    assert servicer.sent[-1][1].include_pictures
    with_picture, without = ann.faces
    assert with_picture.has_picture and with_picture.picture is not None
    assert with_picture.picture.data == b"webp" and not without.has_picture and without.picture is None


def test_reembed_is_waited_for_with_its_progress_and_failed_faces(gallery: tuple[Recorded, str]) -> None:
    servicer, address = gallery
    seen: list[int] = []
    with facerec_client.Gallery(address, collection="archive") as client:
        started = client.reembed(model="facenet-keras-128-int8", drop_failed=True)
        assert not started.done and started.name == "operations/9"
        done = client.wait_operation(started, poll_s=0.001, on_progress=lambda op: seen.append(op.faces_done))
    sent = servicer.sent[0][1]
    assert (sent.collection, sent.contract.model, sent.drop_failed) == (
        "archive",
        "facenet-keras-128-int8",
        True,
    )
    assert seen == [2, 4, 5] and done.succeeded and done.stage == "done"
    assert done.collection is not None and done.collection.contract.model == "facenet-keras-128-int8"
    assert done.failed_faces == (facerec_client.FailedFace(4, "ann", "No kept picture."),)


def test_waiting_past_its_bound_is_deadline_exceeded_and_the_operation_goes_on(
    gallery: tuple[Recorded, str],
) -> None:
    _, address = gallery
    with facerec_client.Gallery(address) as client:
        with pytest.raises(facerec_client.DeadlineExceeded, match="operations/9 was not done"):
            client.wait_operation("operations/9", poll_s=10.0, timeout_s=0.01)


def test_operating_points_are_sent_for_the_collection(gallery: tuple[Recorded, str]) -> None:
    servicer, address = gallery
    point = facerec_client.OperatingPoint("far_1e-3", 0.98, 0.001, 0.002, 0.95, 100, 1000)
    ident = facerec_client.OperatingPoint("identification", 0.9, 0.0, 0.0, 0.9, 10, 10)
    with facerec_client.Gallery(address, collection="archive") as client:
        client.set_operating_points(
            [point], model="facenet-keras-128", operating_point="far_1e-3", identification_point=ident
        )
    sent = servicer.sent[0][1]
    assert sent.collection == "archive" and sent.model == "facenet-keras-128"
    assert (
        sent.operating_points[0].impostor_pairs == 1000 and sent.identification_point.name == "identification"
    )


def test_the_asyncio_client_names_collections_alike(gallery: tuple[Recorded, str]) -> None:
    servicer, address = gallery

    async def run() -> facerec_client.Operation:
        async with facerec_client.AsyncGallery(address, collection="door") as client:
            await client.identify(b"p")
            await client.identify(b"p", collection="archive")
            await client.create_collection("archive")
            assert [c.name for c in await client.list_collections()] == ["archive", "default"]
            await client.rename_identity("ann", "Ann")
            started = await client.reembed("archive", model="m")
            return await client.wait_operation(started, poll_s=0.001)

    done = asyncio.run(run())
    assert done.done and done.faces_done == 5
    assert [r.collection for _, r in servicer.sent[:2]] == ["door", "archive"]
    assert servicer.sent[-5][0] == "RenameIdentity" and servicer.sent[-5][1].collection == "door"


def test_an_unreachable_gallerys_operation_wait_fails_in_one_sentence() -> None:
    with facerec_client.Gallery("127.0.0.1:1", timeout_s=0.5) as client:
        with pytest.raises(facerec_client.Unavailable) as caught:
            client.wait_operation("operations/1")
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE


def test_identity_reads_every_page_of_a_real_gallery(tmp_path: Path) -> None:
    """A real gallery (SQLite, FAISS) answers an identity of 1,040 faces in pages (1000, or 32 with
    pictures); identity() in both clients gives every face, and every kept picture, in face id order."""
    world = World(people=2)
    manager = make_manager(str(tmp_path / "g.sqlite"), world)
    settings = Settings(
        store=tmp_path / "g.sqlite", calibration_path=tmp_path / "c.json", host="127.0.0.1", port=0
    )
    server, port = build_server(settings, manager, Health([SERVICE_NAME]))
    server.start()
    try:
        rng = np.random.default_rng(5)
        vectors = rng.normal(size=(1040, len(world.vectors[0]))).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        kept = [
            KeptPicture(b"face-%d" % i, "image/jpeg", 320, 320, (80.0, 80.0, 160.0, 160.0)) for i in range(40)
        ]
        storage = manager.storage("default")
        with storage.write_lock:
            ids = storage.store.add_faces(
                "ann", [NewFace(v, f"s{i}", None, kept[i] if i < 40 else None) for i, v in enumerate(vectors)]
            )
            storage.index.add(np.array(ids, np.int64), vectors)
        address = f"127.0.0.1:{port}"
        with facerec_client.Gallery(address) as client:
            plain = client.identity("ann")
            pictured = client.identity("ann", include_pictures=True)

        async def read() -> facerec_client.Identity:
            async with facerec_client.AsyncGallery(address) as aio:
                return await aio.identity("ann", include_embeddings=True)

        embedded = asyncio.run(read())
    finally:
        server.stop(0)
        manager.close()
    assert [f.face_id for f in plain.faces] == ids and plain.face_count == 1040
    assert [f.face_id for f in pictured.faces] == ids
    assert [f.picture.data for f in pictured.faces if f.picture is not None] == [k.data for k in kept]
    assert [f.face_id for f in embedded.faces] == ids
    assert np.allclose([f.embedding for f in embedded.faces], vectors)
