"""Collections on a Milvus index, end to end on the real services, on both engines (milvus-lite and the Milvus
standalone server): each collection generation is a Milvus collection of its own, so a face of one
collection never answers in another; a re-embed serves its new generation from its own Milvus collection
as soon as it switches and drops the old one; deleting a collection drops its Milvus collection and leaves
the default one whole."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from facerec.v1 import common_pb2, gallery_pb2, gallery_pb2_grpc
from tests.support.engines import milvus_collection_names
from tests.support.servers import Running, start_service

FP32, INT8 = "facenet-keras-128", "facenet-keras-128-int8"


@pytest.fixture(params=["faiss", "lite", "standalone"])
def milvus_uri(request: pytest.FixtureRequest) -> str:
    if request.param == "faiss":
        return ""
    return str(request.getfixturevalue(f"milvus_{request.param}_server").uri)


@pytest.fixture
def gallery(
    inference_services: tuple[Running, Running], milvus_uri: str, tmp_path: Path
) -> Iterator[tuple[Running, str]]:
    """A gallery on a SQLite store and Milvus, its Milvus collections named from a base of this test's own."""
    detector, embedder = inference_services
    base = "e2e_" + uuid.uuid4().hex[:10]
    args = ["--store", str(tmp_path / "gallery.sqlite"), "--detector", detector.address]
    args += ["--embedder", embedder.address]
    if milvus_uri:
        args += ["--index", milvus_uri, "--index-type", "FLAT", "--index-collection", base]
    running = start_service("gallery", args, env={"FACEREC_HOME": str(tmp_path)}, timeout_s=180)
    yield running, base
    running.stop()


def _image(path: Path) -> common_pb2.Image:
    return common_pb2.Image(data=path.read_bytes())


def _named(stub: gallery_pb2_grpc.GalleryStub, collection: str, path: Path) -> str:
    """Who the largest face on the picture is in the collection ("" when nobody known)."""
    reply = stub.Identify(gallery_pb2.IdentifyRequest(collection=collection, image=_image(path)), timeout=120)
    largest = max(reply.faces, key=lambda f: f.box.width * f.box.height, default=None)
    return largest.identity if largest is not None and largest.known else ""


@pytest.mark.timeout(600)
def test_collections_on_milvus_are_apart_reembedded_and_dropped(
    gallery: tuple[Running, str], milvus_uri: str, train_images, val_images
) -> None:
    running, base = gallery
    people = sorted({name for name, _ in train_images})
    a, b = people[0], people[1]
    val = {name: path for name, path in val_images}
    with grpc.insecure_channel(running.address) as channel:
        stub = gallery_pb2_grpc.GalleryStub(channel)
        created = stub.CreateCollection(gallery_pb2.CreateCollectionRequest(name="door"), timeout=30)
        for collection, person in (("", a), ("door", b)):
            images = [_image(p) for name, p in train_images if name == person]
            stub.Enroll(
                gallery_pb2.EnrollRequest(collection=collection, identity=person, images=images), timeout=300
            )
        # The default collection keeps the configured name; "door" (collection 2) has its own.
        if milvus_uri:
            assert {base, f"{base}_c2_g1"} <= milvus_collection_names(milvus_uri)
        assert _named(stub, "", val[a]) == a and _named(stub, "door", val[b]) == b
        assert _named(stub, "door", val[a]) != a and _named(stub, "", val[b]) != b

        other = INT8 if created.contract.model == FP32 else FP32
        op = stub.Reembed(
            gallery_pb2.ReembedRequest(
                collection="door", contract=gallery_pb2.EmbeddingContract(model=other)
            ),
            timeout=60,
        )
        deadline = time.monotonic() + 300
        while not op.done and time.monotonic() < deadline:
            time.sleep(0.1)
            op = stub.GetOperation(gallery_pb2.GetOperationRequest(name=op.name), timeout=30)
        assert op.response.contract.model == other, op.error
        # Served from the new generation's Milvus collection at once; the old one is gone.
        assert _named(stub, "door", val[b]) == b
        if milvus_uri:
            names = milvus_collection_names(milvus_uri)
            assert f"{base}_c2_g2" in names and f"{base}_c2_g1" not in names

        stub.DeleteCollection(gallery_pb2.DeleteCollectionRequest(name="door"), timeout=60)
        if milvus_uri:
            names = milvus_collection_names(milvus_uri)
            assert not {n for n in names if n.startswith(f"{base}_c2_")} and base in names
        assert _named(stub, "", val[a]) == a
