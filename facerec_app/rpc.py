"""Client-side helpers for the CLI: channels, one-sentence errors, and embedding pictures through the services."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import grpc
import numpy as np
from numpy.typing import NDArray

from facerec.v1 import gallery_pb2
from gallery.ports import ModelInfo


class ClientError(Exception):
    """A call failed; the message is one sentence naming the service."""


def describe(exc: grpc.RpcError, service: str, address: str) -> ClientError:
    code = exc.code()
    if code == grpc.StatusCode.UNAVAILABLE:
        return ClientError(f"The {service} at {address} is not reachable; is `facerec serve` running?")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return ClientError(f"The {service} at {address} did not answer in time.")
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return ClientError(f"The {service} at {address} needs a valid token (--token or FACEREC_TOKEN).")
    return ClientError(f"The {service} answered {code.name}: {exc.details()}")


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
        raise ClientError(f"Cannot read {path}: {exc.strerror or exc}.") from None


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
