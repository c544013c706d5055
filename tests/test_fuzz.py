"""Bounded fuzzing over gRPC: hostile picture bytes into Detect, hostile Gallery messages.

Detect runs the real DetectorServicer and its real decode path (facerec.images.decode_image) behind
a fake model; the Gallery runs for real over fake detector and embedder servers. Whatever the
input, the answer is OK or one of the documented codes (docs/limits.md), never INTERNAL or UNKNOWN,
and the servers keep answering. Bounded by example counts (well under a minute together).
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from detector_service.batcher import BatchingDetector
from detector_service.config import Settings as DetectorSettings
from detector_service.detector import Box, Detection, Landmarks
from detector_service.service import build_detector_server
from facerec.server import Health, Service
from facerec.server import build_server as build_grpc_server
from facerec.settings import ServerOptions
from facerec.v1 import (
    common_pb2,
    detector_pb2,
    detector_pb2_grpc,
    embedding_pb2_grpc,
    gallery_pb2,
    gallery_pb2_grpc,
)
from gallery.backend import open_gallery
from gallery.clients import DetectorClient, EmbedderClient
from gallery.config import Settings as GallerySettings
from gallery.service import build_server as build_gallery_server
from tests.support.gallery import MODEL, FakeDetectorServicer, FakeEmbedderServicer, World, portrait
from tests.support.images import png_header_only

ANSWERS = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
}
ITEM_CODES = {0, grpc.StatusCode.INVALID_ARGUMENT.value[0], grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]}
# ~1-5 ms an example: both fuzz tests together take about 15-30 s.
FUZZ = settings(
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def code_of(call) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as exc:
        assert exc.details() and "Traceback" not in exc.details()
        return exc.code()
    return grpc.StatusCode.OK


# --- Detect -------------------------------------------------------------------------------------


class OneFace:
    """A model that finds one face in the middle of any picture (the decode path is what is fuzzed)."""

    pictures = 0

    def detect(self, images, options):
        OneFace.pictures += len(images)
        marks = Landmarks((1.0, 2.0), (3.0, 4.0), (5.0, 6.0), (7.0, 8.0), (9.0, 10.0))
        return [
            [Detection(Box(0.0, 0.0, float(i.shape[1]), float(i.shape[0])), 0.99, marks, None)]
            for i in images
        ]


def _encoded(fmt: str, size: tuple[int, int], mode: str = "RGB", **params) -> bytes:
    rgb = np.random.default_rng(7).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    picture = Image.fromarray(rgb).convert(mode)
    out = io.BytesIO()
    picture.save(out, format=fmt, **params)
    return out.getvalue()


def _exif_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90°
    return _encoded("JPEG", (40, 24), exif=exif.tobytes())


SEEDS = [
    _encoded("PNG", (32, 24)),
    _encoded("PNG", (20, 20), "P"),
    _encoded("PNG", (20, 20), "LA"),
    _encoded("PNG", (20, 20), "I;16"),
    _encoded("JPEG", (40, 30)),
    _encoded("JPEG", (40, 30), progressive=True),
    _exif_jpeg(),
    _encoded("WEBP", (24, 24)),
    _encoded("BMP", (16, 16)),
    _encoded("GIF", (16, 16), "P"),
    _encoded("TIFF", (16, 16)),
]

mutated = st.builds(
    lambda seed, edits, cut: _mutate(seed, edits, cut),
    st.sampled_from(SEEDS),
    st.lists(st.tuples(st.integers(0, 4096), st.integers(0, 255)), max_size=8),
    st.one_of(st.none(), st.integers(0, 4096)),
)
headers = st.builds(png_header_only, st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1))
pictures = st.one_of(st.binary(max_size=2048), mutated, headers, st.sampled_from(SEEDS))


def _mutate(seed: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    data = bytearray(seed)
    for position, value in edits:
        data[position % len(data)] = value
    return bytes(data[:cut] if cut is not None else data)


@pytest.fixture(scope="module")
def detect_stub() -> Iterator[detector_pb2_grpc.DetectorStub]:
    config = DetectorSettings(host="127.0.0.1", port=0, max_image_pixels=4_000_000, max_image_bytes=1 << 20)
    detector = BatchingDetector(OneFace(), max_batch=4, max_delay_ms=0, max_queue=8)
    server, port = build_detector_server(config, detector, Health(["facerec.v1.Detector"]))
    server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield detector_pb2_grpc.DetectorStub(channel)
    server.stop(0)
    detector.close()


@FUZZ
@given(images=st.lists(pictures, min_size=1, max_size=3), crops=st.booleans())
def test_detect_answers_any_bytes_with_documented_codes(
    detect_stub, images: list[bytes], crops: bool
) -> None:
    request = detector_pb2.DetectRequest(
        images=[common_pb2.Image(data=d) for d in images],
        options=detector_pb2.DetectOptions(return_crops=crops),
    )
    replies: list[detector_pb2.DetectResponse] = []
    code = code_of(lambda: replies.append(detect_stub.Detect(request, timeout=30)))
    assert code in ANSWERS
    for result in replies[0].results if replies else []:
        assert result.error.code in ITEM_CODES, result.error
        assert bool(result.error.code) != bool(result.faces)


def test_detect_still_answers_after_the_fuzz(detect_stub) -> None:
    decoded = OneFace.pictures
    request = detector_pb2.DetectRequest(images=[common_pb2.Image(data=SEEDS[0])])
    assert len(detect_stub.Detect(request, timeout=10).results[0].faces) == 1
    assert decoded > 100  # the fuzz reached the model, not only the decoder's refusals


# --- Gallery ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gallery_stub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[gallery_pb2_grpc.GalleryStub]:
    world = World()
    fakes = []
    for name, add in (
        (
            "facerec.v1.Detector",
            lambda s: detector_pb2_grpc.add_DetectorServicer_to_server(FakeDetectorServicer(), s),
        ),
        (
            "facerec.v1.Embedder",
            lambda s: embedding_pb2_grpc.add_EmbedderServicer_to_server(FakeEmbedderServicer(world), s),
        ),
    ):
        server, port = build_grpc_server(
            [Service(name, add)], ServerOptions(host="127.0.0.1"), Health([name])
        )
        server.start()
        fakes.append((server, f"127.0.0.1:{port}"))
    folder: Path = tmp_path_factory.mktemp("fuzz-gallery")
    config = GallerySettings(
        store=folder / "g.sqlite", calibration_path=folder / "c.json", host="127.0.0.1", port=0
    )
    gallery = open_gallery(
        config.store, MODEL, DetectorClient(fakes[0][1], 10), EmbedderClient(fakes[1][1], 10)
    )
    server, port = build_gallery_server(config, gallery, Health(["facerec.v1.Gallery"]))
    server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = gallery_pb2_grpc.GalleryStub(channel)
        stub.address = f"127.0.0.1:{port}"  # for raw-bytes calls
        for i, name in enumerate(("alice", "bob")):
            stub.Enroll(
                gallery_pb2.EnrollRequest(identity=name, images=[common_pb2.Image(data=portrait(i))]),
                timeout=10,
            )
        yield stub
    server.stop(0)
    gallery.close()
    for fake, _ in fakes:
        fake.stop(0)


# protobuf strings are UTF-8: any code point but lone surrogates, which a client cannot even send.
names = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",)), max_size=140),
    st.sampled_from(
        ["alice", "bob", "", "a" * 128, "a" * 129, "zw\u200dj", "rtl\u202e", "nul\x00", "é" * 64]
    ),
)
floats = st.floats(width=32, allow_nan=True, allow_infinity=True)
vectors = st.one_of(
    st.lists(floats, min_size=128, max_size=128),
    st.lists(floats, max_size=130),
    st.lists(st.floats(-1, 1, width=32), min_size=128, max_size=128),
)
embeddings = st.builds(
    lambda values, model: common_pb2.Embedding(values=values, model=model),
    vectors,
    st.sampled_from(["", MODEL, "other-model"]),
)
int32 = st.integers(-(2**31), 2**31 - 1)
operating_points = st.one_of(
    st.sampled_from(["", "far_1e-2", "far_1e-3", "eer", "identification", "far_1e-4"]),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=300),
)
images = st.builds(
    common_pb2.Image, data=st.one_of(st.binary(max_size=64), st.builds(portrait, st.integers(0, 40)))
)
requests = st.one_of(
    st.builds(
        lambda identity, e, i: (
            "Enroll",
            gallery_pb2.EnrollRequest(identity=identity, embeddings=e, images=i),
        ),
        names,
        st.lists(embeddings, max_size=3),
        st.lists(images, max_size=2),
    ),
    st.builds(
        lambda e, k, t, p: (
            "Identify",
            gallery_pb2.IdentifyRequest(embedding=e, top_k=k, threshold=t, operating_point=p),
        ),
        embeddings,
        int32,
        floats,
        operating_points,
    ),
    st.builds(
        lambda i, k, t: ("Identify", gallery_pb2.IdentifyRequest(image=i, top_k=k, threshold=t)),
        images,
        int32,
        floats,
    ),
    st.builds(lambda e, k: ("Search", gallery_pb2.SearchRequest(embedding=e, top_k=k)), embeddings, int32),
    st.builds(
        lambda a, n, t, p: (
            "Verify",
            gallery_pb2.VerifyRequest(image_a=a, identity=n, threshold=t, operating_point=p),
        ),
        images,
        names,
        floats,
        operating_points,
    ),
    st.builds(
        lambda size, token: (
            "ListIdentities",
            gallery_pb2.ListIdentitiesRequest(page_size=size, page_token=token),
        ),
        int32,
        st.text(max_size=40),
    ),
    st.builds(lambda n: ("GetIdentity", gallery_pb2.GetIdentityRequest(identity=n)), names),
    st.builds(
        lambda f: ("RemoveFace", gallery_pb2.RemoveFaceRequest(face_id=f)), st.integers(-(2**63), 2**63 - 1)
    ),
)


@FUZZ
@given(call=requests)
# JSON that is not a fake picture (b"0" parses to an int): once crashed the fake detector (UNAVAILABLE).
@example(call=("Identify", gallery_pb2.IdentifyRequest(image=common_pb2.Image(data=b"0"))))
@example(call=("Enroll", gallery_pb2.EnrollRequest(identity="x", images=[common_pb2.Image(data=b"[]")])))
def test_gallery_answers_any_message_with_documented_codes(gallery_stub, call) -> None:
    method, request = call
    replies: list = []
    code = code_of(lambda: replies.append(getattr(gallery_stub, method)(request, timeout=30)))
    assert code in ANSWERS, (method, request, code)
    if method == "Enroll" and code == grpc.StatusCode.OK:
        for result in replies[0].results:
            assert result.error.code in ITEM_CODES | {grpc.StatusCode.FAILED_PRECONDITION.value[0]}, result
        if any(r.outcome == gallery_pb2.ENROLLED for r in replies[0].results):
            # Only a valid name is ever stored.
            assert 0 < len(request.identity) <= 128
            faces = gallery_stub.GetIdentity(
                gallery_pb2.GetIdentityRequest(identity=request.identity), timeout=10
            )
            assert faces.faces


def test_examples_are_never_replayed_from_a_database() -> None:
    """A once-failed example must not fail every later run in this clone (tests/conftest.py)."""
    assert FUZZ.database is None


GALLERY_METHODS = [m.name for m in gallery_pb2.DESCRIPTOR.services_by_name["Gallery"].methods]
# The gallery here is one facade (no collections catalog): the collections' RPCs answer UNIMPLEMENTED
# (tests/gallery/test_service_collections.py fuzzes nothing but checks them on a real CollectionManager).
ONE_FACADE_UNSERVED = {
    "CreateCollection",
    "GetCollection",
    "ListCollections",
    "DeleteCollection",
    "SetOperatingPoints",
    "Reembed",
    "GetOperation",
    "RenameIdentity",
    "GetFacePicture",
}


@settings(FUZZ, max_examples=300)
@given(method=st.sampled_from(GALLERY_METHODS), data=st.binary(max_size=512))
def test_gallery_answers_any_bytes_on_the_wire_with_documented_codes(gallery_stub, method, data) -> None:
    """Bytes that are not the request message (or are one by chance) never get INTERNAL."""
    with grpc.insecure_channel(gallery_stub.address) as channel:
        raw = channel.unary_unary(f"/facerec.v1.Gallery/{method}")
        try:
            raw(data, timeout=10)
        except grpc.RpcError as exc:
            unserved = {grpc.StatusCode.UNIMPLEMENTED} if method in ONE_FACADE_UNSERVED else set()
            assert exc.code() in ANSWERS | unserved, (method, data, exc.code(), exc.details())


def test_gallery_is_consistent_after_the_fuzz(gallery_stub) -> None:
    stats = gallery_stub.Stats(gallery_pb2.StatsRequest(), timeout=10)
    assert stats.index_size == stats.faces >= 2
    query = gallery_pb2.SearchRequest(embedding=common_pb2.Embedding(values=[1.0] + [0.0] * 127), top_k=100)
    hits = gallery_stub.Search(query, timeout=10).hits
    assert hits and all(math.isfinite(h.distance) and 0 <= h.distance <= 2.0001 for h in hits)
