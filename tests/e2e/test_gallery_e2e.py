"""The gallery against the real detector and embedder processes (real MTCNN and FaceNet weights) on
the 5-celebrity pictures: open-set and trained identification, verification, durability across
kill -9, removal, and bad pictures."""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image

from embedding_service.embedder import model_name
from facerec.server import Health
from facerec.v1 import common_pb2, gallery_pb2, gallery_pb2_grpc
from gallery.backend import open_gallery
from gallery.clients import DetectorClient, EmbedderClient
from gallery.config import Settings
from gallery.ports import DetectorOptions, largest_face
from gallery.service import SERVICE_NAME, build_server
from tests.support.servers import Running, start_service

pytestmark = pytest.mark.model

# The real embedder serves its default precision, int8 (the calibration crops come with fetched_assets).
MODEL = model_name("int8")


def image(path_or_bytes: Path | bytes) -> common_pb2.Image:
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else path_or_bytes.read_bytes()
    return common_pb2.Image(data=data)


def by_person(pairs: list[tuple[str, Path]]) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for name, path in pairs:
        out.setdefault(name, []).append(path)
    return out


def largest(faces) -> gallery_pb2.IdentifiedFace:
    return max(faces, key=lambda f: f.box.width * f.box.height)


def blank_png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (200, 200), (128, 128, 128)).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def stack(
    inference_services, tmp_path_factory
) -> Iterator[tuple[gallery_pb2_grpc.GalleryStub, Running, Running]]:
    """An in-process gallery on port 0 using the real detector and embedder processes; default threshold."""
    detector, embedder = inference_services
    folder = tmp_path_factory.mktemp("gallery")
    settings = Settings(
        store=folder / "g.sqlite", calibration_path=folder / "none.json", host="127.0.0.1", port=0
    )
    gallery = open_gallery(
        settings.store,
        MODEL,
        DetectorClient(detector.address, timeout_s=120),
        EmbedderClient(embedder.address, timeout_s=120),
    )
    health = Health([SERVICE_NAME])
    server, port = build_server(settings, gallery, health)
    server.start()
    health.set_serving()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield gallery_pb2_grpc.GalleryStub(channel), detector, embedder
    channel.close()
    server.stop(0)
    gallery.close()


def enroll(stub, name: str, paths: list[Path]) -> gallery_pb2.EnrollResponse:
    reply = stub.Enroll(
        gallery_pb2.EnrollRequest(identity=name, images=[image(p) for p in paths]), timeout=300
    )
    stored = [r for r in reply.results if r.outcome in (gallery_pb2.ENROLLED, gallery_pb2.MULTIPLE_FACES)]
    assert len(stored) >= len(paths) - 1, [gallery_pb2.EnrollOutcome.Name(r.outcome) for r in reply.results]
    return reply


def identify_all(stub, paths: list[Path]) -> list[gallery_pb2.IdentifyResponse]:
    with ThreadPoolExecutor(4) as pool:
        return list(
            pool.map(lambda p: stub.Identify(gallery_pb2.IdentifyRequest(image=image(p)), timeout=300), paths)
        )


def test_open_set_then_trained_closed_set(stack, train_images, val_images) -> None:
    stub, _, _ = stack
    train, val = by_person(train_images), by_person(val_images)
    people = sorted(train)
    known, stranger = people[:4], people[4]
    for name in known:
        enroll(stub, name, train[name])

    answers = dict(
        zip([p for _, p in val_images], identify_all(stub, [p for _, p in val_images]), strict=True)
    )
    for name in known:
        for path in val[name]:
            face = largest(answers[path].faces)
            assert (face.identity, face.known) == (name, True), (path.name, face)
            assert answers[path].method == "svm"
    unknown = [largest(answers[p].faces) for p in val[stranger]]
    assert sum(not f.known and f.identity == "" for f in unknown) >= 4, unknown
    assert all(f.candidates and f.candidates[0].identity in known for f in unknown)

    enroll(stub, stranger, train[stranger])
    trained = stub.Train(gallery_pb2.TrainRequest(), timeout=120)
    assert trained.identities == 5 and trained.train_accuracy == pytest.approx(1.0)
    assert not stub.Stats(gallery_pb2.StatsRequest(), timeout=10).classifier_stale
    right = 0
    for (name, _path), answer in zip(val_images, identify_all(stub, [p for _, p in val_images]), strict=True):
        face = largest(answer.faces)
        right += face.identity == name and face.known
    assert right == 25


def test_every_person_left_out_is_a_stranger_at_the_default_thresholds(
    stack, train_images, val_images, tmp_path: Path
) -> None:
    """Open set for each choice of stranger, not just a lucky one: enroll four people's train faces
    (as embeddings, from the real services), identify all val faces; the fifth must come back unknown."""
    from facerec_app.rpc import Embedding

    _, detector, embedder = stack
    client = Embedding(detector.address, embedder.address)
    train_vectors = client.embed_images([p.read_bytes() for _, p in train_images])
    val_vectors = client.embed_images([p.read_bytes() for _, p in val_images])
    client.close()
    people = sorted({who for who, _ in train_images})
    for stranger in people:
        g = open_gallery(
            tmp_path / f"without-{stranger}.sqlite",
            MODEL,
            DetectorClient(detector.address, timeout_s=60),
            EmbedderClient(embedder.address, timeout_s=60),
        )
        for name in people:
            if name != stranger:
                mine = [
                    (v.tolist(), MODEL)
                    for (who, _), v in zip(train_images, train_vectors, strict=True)
                    if who == name and v is not None
                ]
                g.enroll(name, embeddings=mine)
        rejected = 0
        for (who, _), v in zip(val_images, val_vectors, strict=True):
            face = g.identify_embedding(v.tolist()).faces[0]
            if who == stranger:
                rejected += not face.known
            else:
                assert (face.identity, face.known) == (who, True), (stranger, who, face.distance)
        g.close()
        assert rejected >= 4, f"{stranger}: only {rejected} of 5 val faces were unknown"


def test_verify_pairs_at_the_default_threshold(stack, val_images) -> None:
    stub, detector, embedder = stack
    paths = [p for _, p in val_images]
    names = [n for n, _ in val_images]
    # Embeddings once, through the same services the gallery uses (largest face of each picture).
    detected = DetectorClient(detector.address, timeout_s=120).detect(
        [p.read_bytes() for p in paths], DetectorOptions()
    )
    crops = [largest_face(d.faces).crop for d in detected]
    vectors = np.stack(EmbedderClient(embedder.address, timeout_s=120).embed(crops).vectors)
    threshold = stub.Stats(gallery_pb2.StatsRequest(), timeout=10).threshold
    pairs = list(itertools.combinations(range(len(paths)), 2))
    distance = {(i, j): float(np.linalg.norm(vectors[i] - vectors[j])) for i, j in pairs}
    right = sum((distance[i, j] <= threshold) == (names[i] == names[j]) for i, j in pairs)
    assert right / len(pairs) >= 0.95, (right, len(pairs), threshold)

    same = [(i, j) for i, j in pairs if names[i] == names[j]][::10]
    different = [(i, j) for i, j in pairs if names[i] != names[j]][::60]
    for i, j in same + different:
        reply = stub.Verify(
            gallery_pb2.VerifyRequest(image_a=image(paths[i]), image_b=image(paths[j])), timeout=120
        )
        assert reply.distance == pytest.approx(distance[i, j], abs=1e-3)
        assert reply.match == (distance[i, j] <= threshold) and reply.threshold == pytest.approx(threshold)

    # Against an identity: the distance to its nearest enrolled face.
    person = names[0]
    mine = [i for i, n in enumerate(names) if n == person]
    other = next(i for i, n in enumerate(names) if n != person)
    stub.Enroll(
        gallery_pb2.EnrollRequest(
            identity="verify-me",
            embeddings=[common_pb2.Embedding(values=vectors[i].tolist(), model=MODEL) for i in mine[:2]],
        ),
        timeout=60,
    )
    try:
        reply = stub.Verify(
            gallery_pb2.VerifyRequest(image_a=image(paths[mine[2]]), identity="verify-me"), timeout=120
        )
        expected = min(float(np.linalg.norm(vectors[mine[2]] - vectors[i])) for i in mine[:2])
        assert reply.match and reply.distance == pytest.approx(expected, abs=1e-3)
        reply = stub.Verify(
            gallery_pb2.VerifyRequest(image_a=image(paths[other]), identity="verify-me"), timeout=120
        )
        assert not reply.match
    finally:
        stub.RemoveIdentity(gallery_pb2.RemoveIdentityRequest(identity="verify-me"), timeout=10)


def test_bad_pictures_on_the_real_stack(stack, val_images) -> None:
    stub, _, _ = stack
    good = val_images[0][1].read_bytes()
    truncated = good[: len(good) // 3]
    reply = stub.Enroll(
        gallery_pb2.EnrollRequest(
            identity="bad-inputs", images=[image(good), image(b"\x89PNG not really"), image(blank_png())]
        ),
        timeout=120,
    )
    outcomes = [r.outcome for r in reply.results]
    assert outcomes == [gallery_pb2.ENROLLED, gallery_pb2.INVALID, gallery_pb2.NO_FACE], outcomes
    assert reply.results[1].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    try:
        for request in (
            gallery_pb2.IdentifyRequest(image=image(b"GIF89a nonsense")),
            gallery_pb2.IdentifyRequest(image=image(b"")),
        ):
            with pytest.raises(grpc.RpcError) as info:
                stub.Identify(request, timeout=60)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as info:
            stub.Verify(
                gallery_pb2.VerifyRequest(image_a=image(blank_png()), image_b=image(good)), timeout=60
            )
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # A truncated JPEG is either refused as a whole or decoded partially; never an error status.
        answer = stub.Identify(gallery_pb2.IdentifyRequest(image=image(blank_png())), timeout=60)
        assert list(answer.faces) == [] and answer.width == 200
        try:
            stub.Identify(gallery_pb2.IdentifyRequest(image=image(truncated)), timeout=60)
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert stub.Stats(gallery_pb2.StatsRequest(), timeout=10).faces >= 1
    finally:
        stub.RemoveIdentity(gallery_pb2.RemoveIdentityRequest(identity="bad-inputs"), timeout=10)


def start_gallery_process(store: Path, detector: Running, embedder: Running) -> Running:
    return start_service(
        "gallery",
        [
            "--store",
            str(store),
            "--detector",
            detector.address,
            "--embedder",
            embedder.address,
            "--calibration",
            str(store.parent / "none.json"),
        ],
        timeout_s=120,
    )


def test_acknowledged_faces_survive_kill_9_and_removals_stay_removed(
    inference_services, tmp_path: Path, train_images, val_images
) -> None:
    detector, embedder = inference_services
    train, val = by_person(train_images), by_person(val_images)
    people = sorted(train)[:3]
    store = tmp_path / "g.sqlite"
    gallery = start_gallery_process(store, detector, embedder)
    try:
        with grpc.insecure_channel(gallery.address) as channel:
            stub = gallery_pb2_grpc.GalleryStub(channel)
            # Several enrolments at once, then kill -9 as soon as the last one is acknowledged.
            with ThreadPoolExecutor(len(people) * 2) as pool:
                replies = list(
                    pool.map(
                        lambda job: stub.Enroll(
                            gallery_pb2.EnrollRequest(identity=job[0], images=[image(p) for p in job[1]]),
                            timeout=300,
                        ),
                        [(name, train[name][half::2]) for name in people for half in (0, 1)],
                    )
                )
        gallery.process.kill()
        gallery.process.wait(10)
    finally:
        gallery.stop()
    acknowledged: dict[str, set[int]] = {}
    for reply in replies:
        acknowledged.setdefault(reply.identity, set()).update(r.face_id for r in reply.results if r.face_id)
    assert sum(map(len, acknowledged.values())) >= sum(len(train[n]) for n in people) - 1

    removed = people[1]
    probe = val[removed][0]
    vector = (
        EmbedderClient(embedder.address, timeout_s=120)
        .embed(
            [
                largest_face(
                    DetectorClient(detector.address).detect([probe.read_bytes()], DetectorOptions())[0].faces
                ).crop
            ]
        )
        .vectors[0]
    )

    def check(stub, removed_too: bool) -> None:
        stats = stub.Stats(gallery_pb2.StatsRequest(), timeout=10)
        assert stats.index_size == stats.faces
        for name in people:
            if removed_too and name == removed:
                continue
            faces = stub.GetIdentity(gallery_pb2.GetIdentityRequest(identity=name), timeout=10).faces
            assert {f.face_id for f in faces} == acknowledged[name]
        for name in people:
            face = largest(
                stub.Identify(gallery_pb2.IdentifyRequest(image=image(val[name][1])), timeout=120).faces
            )
            if removed_too and name == removed:
                assert face.identity != removed and removed not in {c.identity for c in face.candidates}
            else:
                assert (face.identity, face.known) == (name, True)
        if removed_too:
            hits = stub.Search(
                gallery_pb2.SearchRequest(embedding=common_pb2.Embedding(values=vector.tolist()), top_k=100),
                timeout=10,
            ).hits
            assert hits and removed not in {h.identity for h in hits}
            listed = stub.ListIdentities(gallery_pb2.ListIdentitiesRequest(), timeout=10).identities
            assert removed not in {i.identity for i in listed}
            with pytest.raises(grpc.RpcError) as info:
                stub.GetIdentity(gallery_pb2.GetIdentityRequest(identity=removed), timeout=10)
            assert info.value.code() == grpc.StatusCode.NOT_FOUND

    gallery = start_gallery_process(store, detector, embedder)
    try:
        with grpc.insecure_channel(gallery.address) as channel:
            stub = gallery_pb2_grpc.GalleryStub(channel)
            check(stub, removed_too=False)
            removed_count = stub.RemoveIdentity(
                gallery_pb2.RemoveIdentityRequest(identity=removed), timeout=10
            )
            assert removed_count.faces_removed == len(acknowledged[removed])
            check(stub, removed_too=True)
        gallery.process.kill()
        gallery.process.wait(10)
    finally:
        gallery.stop()

    gallery = start_gallery_process(store, detector, embedder)
    try:
        with grpc.insecure_channel(gallery.address) as channel:
            check(gallery_pb2_grpc.GalleryStub(channel), removed_too=True)
    finally:
        assert gallery.stop() == 0
