"""docs/limits.md agrees with the code (every setting exists with the default shown), and the limits
that no other test covers hold over gRPC: embeddings per Enroll, images per Enroll and the gallery's
message size."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import fields, replace
from pathlib import Path

import grpc
import numpy as np
import pytest

from detector_service.config import Settings as DetectorSettings
from embedding_service.config import Settings as EmbedderSettings
from facerec import security
from facerec.images import MIN_SIDE_PX, ImageLimits
from facerec.server import Health
from facerec.v1 import common_pb2, gallery_pb2, gallery_pb2_grpc
from gallery import validation
from gallery.backend import open_gallery
from gallery.clients import DetectorClient, EmbedderClient
from gallery.config import Settings as GallerySettings
from gallery.service import build_server
from gateway.config import Settings as GatewaySettings

LIMITS = Path(__file__).resolve().parents[1] / "docs" / "limits.md"
ROW = re.compile(
    r"^\|[^|]*\| `(DETECTOR|EMBEDDER|GALLERY|GATEWAY)_([A-Z_]+)` \| (\d+(?:\.\d+)?) ", re.MULTILINE
)


def defaults(tmp: Path) -> dict[str, object]:
    return {
        "DETECTOR": DetectorSettings(),
        "EMBEDDER": EmbedderSettings(weights_path=tmp / "w.h5", calibration_path=tmp / "c.json"),
        "GALLERY": GallerySettings(store=tmp / "g.sqlite", calibration_path=tmp / "c.json"),
        "GATEWAY": GatewaySettings(),
    }


def test_the_limits_table_names_real_settings_with_their_defaults(tmp_path: Path) -> None:
    text = LIMITS.read_text()
    rows = ROW.findall(text)
    assert len(rows) >= 15
    settings = defaults(tmp_path)
    for service, name, default in rows:
        field = name.lower()
        assert field in {f.name for f in fields(type(settings[service]))}, f"{service}_{name}"
        assert getattr(settings[service], field) == float(default), f"{service}_{name}"
    # The fixed limits the table states.
    assert (validation.MAX_IDENTITY_CHARS, validation.MAX_TOP_K, validation.MAX_PAGE_SIZE) == (128, 100, 1000)
    assert (validation.MAX_FACES_PER_PAGE, validation.MAX_PICTURES_PER_PAGE) == (1000, 32)
    assert (MIN_SIDE_PX, security.MIN_TOKEN_CHARS) == (12, 16)
    assert (ImageLimits().max_pixels_per_byte, ImageLimits().pixels_free_of_ratio) == (1024, 1_000_000)
    # The security settings the last table names exist on every service.
    for prefix in ("DETECTOR", "EMBEDDER", "GALLERY"):
        for field in ("tls_cert", "tls_key", "tls_client_ca", "tokens_file", "tokens"):
            assert hasattr(settings[prefix], field) and f"`{field.upper()}`" in text.replace("PREFIX`", "`")


@pytest.fixture()
def stub(tmp_path: Path) -> Iterator[gallery_pb2_grpc.GalleryStub]:
    """An in-process gallery with small limits; its detector and embedder are never called."""
    settings = replace(
        GallerySettings(
            store=tmp_path / "g.sqlite", calibration_path=tmp_path / "c.json", host="127.0.0.1", port=0
        ),
        max_images_per_enroll=2,
        max_embeddings_per_enroll=1000,
        max_message_bytes=1024 * 1024,
    )
    dead = "127.0.0.1:1"
    gallery = open_gallery(
        settings.store,
        "facenet-keras-128",
        DetectorClient(dead, 2),
        EmbedderClient(dead, 2),
        settings.gallery_options(1.2, "override"),
    )
    server, port = build_server(settings, gallery, Health(["facerec.v1.Gallery"]))
    server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield gallery_pb2_grpc.GalleryStub(channel)
    server.stop(0)
    gallery.close()


def vectors(n: int) -> list[common_pb2.Embedding]:
    rng = np.random.default_rng(7)
    return [common_pb2.Embedding(values=list(v)) for v in rng.normal(size=(n, 128))]


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (gallery_pb2.EnrollRequest(identity="a", embeddings=vectors(1001)), grpc.StatusCode.INVALID_ARGUMENT),
        (
            gallery_pb2.EnrollRequest(identity="a", images=[common_pb2.Image(data=b"x")] * 3),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            gallery_pb2.EnrollRequest(identity="a", images=[common_pb2.Image(data=bytes(2 * 1024 * 1024))]),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        ),
    ],
    ids=["embeddings-per-enroll", "images-per-enroll", "message-bytes"],
)
def test_gallery_request_limits(stub, request_, code) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.Enroll(request_, timeout=10)
    assert info.value.code() == code
    assert stub.Stats(gallery_pb2.StatsRequest(), timeout=10).faces == 0
    # At the limit it is served.
    reply = stub.Enroll(gallery_pb2.EnrollRequest(identity="a", embeddings=vectors(1000)), timeout=30)
    assert len(reply.results) == 1000 and stub.Stats(gallery_pb2.StatsRequest(), timeout=10).faces == 1000
