"""Synthetic people for the gallery tests: seeded embeddings, fake pictures naming them, and fake
detector and embedder ports and servicers that read those pictures."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from facerec.errors import InvalidInput, Unavailable
from facerec.status import error_proto
from facerec.v1 import common_pb2, detector_pb2, detector_pb2_grpc, embedding_pb2, embedding_pb2_grpc
from gallery.gallery import Gallery
from gallery.ports import DetectedFace, DetectedImage, DetectorOptions, Embedded, ModelInfo
from gallery.results import EnrollOutcome

MODEL = "facenet-keras-128"
DIM = 128
BOX = (10.0, 20.0, 100.0, 120.0)


def unit(x: NDArray) -> NDArray[np.float32]:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


class World:
    """Synthetic people: a random unit centroid each, faces at ≈0.6 from each other and ≈1.4 from others'."""

    def __init__(self, people: int = 5, train: int = 8, val: int = 5, seed: int = 7) -> None:
        rng = np.random.default_rng(seed)
        self.names = [f"person-{i}" for i in range(people)]
        centroids = unit(rng.normal(size=(people, DIM)))
        self.vectors: list[NDArray[np.float32]] = []
        self.train: dict[str, list[int]] = {}
        self.val: dict[str, list[int]] = {}
        for name, centroid in zip(self.names, centroids, strict=True):
            self.train[name] = [self.add(unit(centroid + rng.normal(0, 0.045, DIM))) for _ in range(train)]
            self.val[name] = [self.add(unit(centroid + rng.normal(0, 0.045, DIM))) for _ in range(val)]

    def add(self, vector: NDArray[np.float32]) -> int:
        self.vectors.append(vector)
        return len(self.vectors) - 1


def picture(*faces: tuple[int, tuple[float, float, float, float], float], tag: str = "") -> bytes:
    """A fake encoded picture: the faces it holds (vector index, box, detection confidence)."""
    return json.dumps({"faces": [[i, list(box), conf] for i, box, conf in faces], "tag": tag}).encode()


def portrait(index: int, tag: str = "") -> bytes:
    return picture((index, BOX, 0.99), tag=tag)


def enroll_people(gallery: Gallery, world: World, names: Sequence[str]) -> None:
    """Enrolls each person's training pictures; every one must be enrolled."""
    for name in names:
        results = gallery.enroll(name, [portrait(i) for i in world.train[name]])
        assert {r.outcome for r in results} == {EnrollOutcome.ENROLLED}


def brute_force_candidates(
    world: World, gallery: Gallery, query: NDArray[np.float32]
) -> list[tuple[str, float]]:
    """Each enrolled identity with its nearest face's distance to query, nearest first (numpy, exact)."""
    best: dict[str, float] = {}
    for name in world.names:
        vectors = list(gallery.face_embeddings(name).values())
        if vectors:
            best[name] = float(np.linalg.norm(np.stack(vectors) - query, axis=1).min())
    return sorted(best.items(), key=lambda kv: kv[1])


def read_picture(data: bytes) -> list[tuple[int, tuple[float, float, float, float], float]] | None:
    """The faces of a fake picture, or None when the bytes are not one (undecodable, like a real
    detector's answer). Any JSON is not enough: b"0" parses to an int, b"[]" to a list."""
    try:
        faces = []
        for i, (x, y, w, h), conf in json.loads(data)["faces"]:
            faces.append((int(i), (float(x), float(y), float(w), float(h)), float(conf)))
        return faces
    except (ValueError, TypeError, KeyError, IndexError):
        return None


class FakeDetector:
    """Reads fake pictures; a crop is a 1x1 pixel that names the vector (the embedder looks it up)."""

    def __init__(self) -> None:
        self.calls = 0
        self.down = False

    def detect(
        self, images: Sequence[bytes], options: DetectorOptions, timeout_s: float | None = None
    ) -> list[DetectedImage]:
        if self.down:
            raise Unavailable("The detector at fake is unavailable.")
        self.calls += 1
        out = []
        for data in images:
            spec = read_picture(data)
            if spec is None:
                out.append(DetectedImage(error=InvalidInput("The image could not be decoded.")))
                continue
            faces = [
                DetectedFace(box, conf, ((0.0, 0.0),) * 5, np.array([[[i >> 8, i & 255, 7]]], np.uint8))
                for i, box, conf in spec
            ]
            faces.sort(key=lambda f: -f.confidence)
            out.append(DetectedImage(640, 480, faces))
        return out


class FakeEmbedder:
    """Looks the vector up by the crop's pixel. Serves `model` by default and any other model asked for
    (the same vectors, named after it); records the models asked for ("" = the default)."""

    def __init__(self, world: World, model: str = MODEL) -> None:
        self.world = world
        self.model = model
        self.asked: list[str] = []

    def embed(
        self, crops: Sequence[NDArray[np.uint8]], timeout_s: float | None = None, model: str = ""
    ) -> Embedded:
        self.asked.append(model)
        return Embedded(
            model or self.model, [self.world.vectors[(int(c[0, 0, 0]) << 8) | int(c[0, 0, 1])] for c in crops]
        )

    def model_info(self, timeout_s: float | None = None, model: str = "") -> ModelInfo:
        return ModelInfo(model or self.model, DIM, 1.2, "default")

    def models(self, timeout_s: float | None = None) -> list[ModelInfo]:
        return [self.model_info(timeout_s)]


class FakeDetectorServicer(detector_pb2_grpc.DetectorServicer):
    """Reads the fake pictures of picture(); a crop is a 1x1 RGB pixel that names the vector."""

    def Detect(self, request, context):
        if 0 < request.options.min_face_size_px < 12:
            raise InvalidInput("min_face_size_px must be at least 12.")
        results = []
        for image in request.images:
            spec = read_picture(image.data)
            if spec is None:
                results.append(
                    detector_pb2.ImageResult(
                        error=error_proto(InvalidInput("The image could not be decoded."))
                    )
                )
                continue
            faces = []
            for i, (x, y, w, h), conf in sorted(spec, key=lambda f: -f[2]):
                faces.append(
                    detector_pb2.Face(
                        box=common_pb2.Box(x=x, y=y, width=w, height=h),
                        confidence=conf,
                        crop=common_pb2.RgbImage(rgb=bytes([i >> 8, i & 255, 7]), width=1, height=1),
                    )
                )
            results.append(detector_pb2.ImageResult(width=640, height=480, faces=faces))
        return detector_pb2.DetectResponse(results=results)


class FakeEmbedderServicer(embedding_pb2_grpc.EmbedderServicer):
    def __init__(self, world: World) -> None:
        self.world = world
        self.calls = 0

    def Embed(self, request, context):
        self.calls += 1
        model = request.model or MODEL  # any model asked for: the same vectors, named after it
        results = []
        for face in request.faces:
            rgb = face.crop.rgb
            vector = self.world.vectors[(rgb[0] << 8) | rgb[1]]
            results.append(
                embedding_pb2.EmbedResult(embedding=common_pb2.Embedding(values=vector, model=model))
            )
        return embedding_pb2.EmbedResponse(results=results, model=model)

    def GetModelInfo(self, request, context):
        return embedding_pb2.ModelInfo(name=MODEL, dimension=128, threshold=1.2, threshold_source="default")
