"""Client-side helpers for the CLI, the demo and eval: one-sentence errors, the gallery client (facerec-client's
Gallery: every gallery call of the CLI goes through it), and embedding pictures through the services."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
import numpy as np
from numpy.typing import NDArray

import facerec_client
from gallery.ports import ModelInfo

if TYPE_CHECKING:
    from tqdm import tqdm

T = TypeVar("T")


class ClientError(Exception):
    """A call failed; the message is one sentence naming the service. code: the call's status, if any;
    error: the gallery's answer as facerec_client's exception for its status (with the server's reason)."""

    def __init__(
        self,
        message: str,
        code: grpc.StatusCode | None = None,
        error: facerec_client.FacerecError | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.error = error


# Answers about the request's own content (this picture, this name): the next request may well succeed.
ABOUT_THE_REQUEST = frozenset(
    {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.NOT_FOUND}
)


def describe(error: facerec_client.FacerecError, service: str, address: str) -> ClientError:
    """A failed gallery call as the CLI says it: what to do about the gallery itself, else its sentence."""
    code = error.code
    if code == grpc.StatusCode.UNAVAILABLE:
        message = f"The {service} at {address} is not reachable; is `facerec serve` running?"
    elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
        message = f"The {service} at {address} did not answer in time."
    elif code == grpc.StatusCode.UNAUTHENTICATED:
        message = f"The {service} at {address} needs a valid token (--token or FACEREC_TOKEN)."
    else:
        message = f"The {service} answered {code.name}: {error}"
    return ClientError(message, code, error)


def read_image(path: Path) -> bytes:
    """The bytes of a regular file. Opened without blocking and checked before reading: a FIFO given as
    a picture would otherwise wait for a writer forever."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                raise ClientError(f"{path} is not a regular file.", grpc.StatusCode.INVALID_ARGUMENT)
            return file.read()
    except OSError as exc:
        raise ClientError(
            f"Cannot read {path}: {exc.strerror or exc}.", grpc.StatusCode.INVALID_ARGUMENT
        ) from None


def largest(faces: Sequence[facerec_client.Face]) -> facerec_client.Face:
    """The identified face with the largest box (gallery.ports.largest_face is the gallery's own)."""
    return max(faces, key=lambda f: f.box.width * f.box.height if f.box else 0.0)


class Embedding:
    """Embeds pictures through a running detector and embedder (the gallery's own clients): the
    largest face of each picture. Failures are facerec errors with one sentence naming the service."""

    def __init__(
        self, detector: str, embedder: str, timeout_s: float = 60.0, token: str = "", tls_ca: str = ""
    ) -> None:
        from facerec.security import channel_credentials
        from facerec.settings import SettingError
        from gallery.clients import DetectorClient, EmbedderClient

        try:
            credentials = channel_credentials(tls_ca)
        except SettingError as exc:
            raise ClientError(str(exc)) from None
        self._detector = DetectorClient(detector, timeout_s, credentials=credentials, token=token)
        self._embedder = EmbedderClient(embedder, timeout_s, credentials=credentials, token=token)

    def close(self) -> None:
        self._detector.close()
        self._embedder.close()

    def model_info(self) -> ModelInfo:
        return self._embedder.model_info()

    def embed_images(
        self, images: Sequence[bytes], alignment: str = "box"
    ) -> list[NDArray[np.float32] | None]:
        """One unit vector per picture (its largest face), or None where no face was found or it failed."""
        from gallery.ports import DetectorOptions, largest_face

        detected = self._detector.detect(images, DetectorOptions(alignment=alignment))
        crops = [largest_face(d.faces).crop if d.faces and d.error is None else None for d in detected]
        present = [c for c in crops if c is not None]
        vectors = iter(self._embedder.embed(present).vectors if present else ())
        out: list[NDArray[np.float32] | None] = []
        for crop in crops:
            vector = next(vectors) if crop is not None else None
            out.append(vector if isinstance(vector, np.ndarray) else None)
        return out


TIMEOUT_S = 120.0


class GalleryClient:
    """facerec_client.Gallery (the CLI's one way to the gallery: its typed answers, deadlines and safe
    retries) whose failures become one-sentence ClientErrors: `client.call(lambda g: g.stats())`. Every
    call works on `collection` ("" = default) unless it names another."""

    def __init__(self, address: str, token: str = "", tls_ca: str = "", collection: str = "") -> None:
        self.address = address
        try:
            self._gallery = facerec_client.Gallery(
                address, token=token, tls_ca=tls_ca or None, timeout_s=TIMEOUT_S, collection=collection
            )
        except ValueError as exc:  # a CA file it cannot read, an address list it cannot use: one sentence
            raise ClientError(str(exc)) from None

    def call(self, method: Callable[[facerec_client.Gallery], T]) -> T:
        """method(gallery), e.g. `client.call(lambda g: g.stats())`; failures as ClientError."""
        try:
            return method(self._gallery)
        except facerec_client.FacerecError as exc:
            raise describe(exc, "gallery", self.address) from None

    def close(self) -> None:
        self._gallery.close()


@contextmanager
def gallery_client(
    address: str, token: str = "", tls_ca: str = "", collection: str = ""
) -> Iterator[GalleryClient]:
    client = GalleryClient(address, token, tls_ca, collection)
    try:
        yield client
    finally:
        client.close()


def progress(total: int, desc: str) -> tqdm[Any]:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr, disable=None, leave=False)


def identify_one(
    client: GalleryClient, path: Path, top_k: int, threshold: float, operating_point: str = ""
) -> facerec_client.IdentifyResult:
    picture = read_image(path)
    return client.call(
        lambda g: g.identify(picture, top_k=top_k, threshold=threshold, operating_point=operating_point)
    )
