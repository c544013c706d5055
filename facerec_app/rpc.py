"""Client-side helpers for the CLI, the demo and eval: channels, one-sentence errors, a gallery client,
enrolling and identifying picture folders, and embedding pictures through the services."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import numpy as np
from google.protobuf.message import Message
from numpy.typing import NDArray

from facerec.assets import IMAGE_SUFFIXES, labelled_images
from facerec.v1 import common_pb2, gallery_pb2, gallery_pb2_grpc
from gallery.ports import ModelInfo

if TYPE_CHECKING:
    from tqdm import tqdm


class ClientError(Exception):
    """A call failed; the message is one sentence naming the service. code: the call's status, if any."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code


# Answers about the request's own content (this picture, this name): the next request may well succeed.
ABOUT_THE_REQUEST = frozenset(
    {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.NOT_FOUND}
)


def describe(exc: grpc.RpcError, service: str, address: str) -> ClientError:
    code = exc.code()
    if code == grpc.StatusCode.UNAVAILABLE:
        message = f"The {service} at {address} is not reachable; is `facerec serve` running?"
    elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
        message = f"The {service} at {address} did not answer in time."
    elif code == grpc.StatusCode.UNAUTHENTICATED:
        message = f"The {service} at {address} needs a valid token (--token or FACEREC_TOKEN)."
    else:
        message = f"The {service} answered {code.name}: {exc.details()}"
    return ClientError(message, code)


def connect(address: str, token: str = "", tls_ca: str = "") -> grpc.Channel:
    """A channel to a service: TLS trusting `tls_ca` when set, and sending `token` on every call when set."""
    from facerec.channels import open_channel
    from facerec.security import channel_credentials

    try:
        return open_channel(address, credentials=channel_credentials(tls_ca), token=token)
    except ValueError as exc:  # SettingError, or an address list that is not literal IPs
        raise ClientError(str(exc)) from None


def read_image(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ClientError(
            f"Cannot read {path}: {exc.strerror or exc}.", grpc.StatusCode.INVALID_ARGUMENT
        ) from None


def largest(faces: Sequence[gallery_pb2.IdentifiedFace]) -> gallery_pb2.IdentifiedFace:
    """The identified face with the largest box (gallery.ports.largest_face is the gallery's own)."""
    return max(faces, key=lambda f: f.box.width * f.box.height)


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
    """A Gallery stub whose failures become one-sentence ClientErrors."""

    def __init__(self, address: str, token: str = "", tls_ca: str = "") -> None:
        self.address = address
        self._channel = connect(address, token, tls_ca)
        self._stub = gallery_pb2_grpc.GalleryStub(self._channel)

    def call(self, method: str, request: Message) -> Any:
        try:
            return getattr(self._stub, method)(request, timeout=TIMEOUT_S)
        except grpc.RpcError as exc:
            raise describe(exc, "gallery", self.address) from None

    def close(self) -> None:
        self._channel.close()


@contextmanager
def gallery_client(address: str, token: str = "", tls_ca: str = "") -> Iterator[GalleryClient]:
    client = GalleryClient(address, token, tls_ca)
    try:
        yield client
    finally:
        client.close()


def progress(total: int, desc: str) -> tqdm[Any]:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr, disable=None, leave=False)


def folder_images(folder: Path) -> list[tuple[str, Path]]:
    if not folder.is_dir():
        raise ClientError(f"{folder} is not a folder (expected one subfolder of pictures per identity).")
    pairs = labelled_images(folder)
    if not pairs:
        raise ClientError(f"{folder} holds no pictures in identity subfolders ({', '.join(IMAGE_SUFFIXES)}).")
    return pairs


def enroll_pairs(
    client: GalleryClient, pairs: list[tuple[str, Path]], desc: str = "enroll", strict: bool = False
) -> Counter[str]:
    """Enrolls each picture under its identity, four at a time. Returns outcome counts; lists problem files
    (and pictures already enrolled under another identity: refused when strict)."""
    outcomes: Counter[str] = Counter()
    problems: list[str] = []
    bar = progress(len(pairs), desc)

    def one(pair: tuple[str, Path]) -> tuple[str, Path, gallery_pb2.EnrollResult]:
        identity, path = pair
        reply = client.call(
            "Enroll",
            gallery_pb2.EnrollRequest(
                identity=identity, images=[common_pb2.Image(data=read_image(path))], strict=strict
            ),
        )
        return identity, path, reply.results[0]

    with ThreadPoolExecutor(4) as pool:
        for identity, path, result in pool.map(one, pairs):
            name = gallery_pb2.EnrollOutcome.Name(result.outcome)
            outcomes[name] += 1
            if result.duplicate_of and result.outcome != gallery_pb2.INVALID:
                problems.append(
                    f"  warning: {identity}/{path.name} is already enrolled as {result.duplicate_of!r} too"
                )
            if result.outcome == gallery_pb2.MULTIPLE_FACES:
                problems.append(f"  several faces, the largest enrolled: {identity}/{path.name}")
            elif result.outcome not in (gallery_pb2.ENROLLED, gallery_pb2.DUPLICATE):
                detail = f" ({result.error.message})" if result.error.message else ""
                problems.append(f"  {name.lower().replace('_', ' ')}: {identity}/{path.name}{detail}")
            bar.update(1)
    bar.close()
    for line in problems:
        sys.stderr.write(line + "\n")
    return outcomes


def identify_one(
    client: GalleryClient, path: Path, top_k: int, threshold: float, operating_point: str = ""
) -> gallery_pb2.IdentifyResponse:
    request = gallery_pb2.IdentifyRequest(
        image=common_pb2.Image(data=read_image(path)),
        top_k=top_k,
        threshold=threshold,
        operating_point=operating_point,
    )
    reply: gallery_pb2.IdentifyResponse = client.call("Identify", request)
    return reply
