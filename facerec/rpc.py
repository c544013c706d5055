"""Client-side helpers for the CLI: channels, one-sentence errors, and embedding pictures through the services."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import grpc
import numpy as np
from numpy.typing import NDArray

from facerec.v1 import common_pb2, detector_pb2, detector_pb2_grpc, embedding_pb2, embedding_pb2_grpc


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


def open_channel(address: str, token: str = "", tls_ca: str = "") -> grpc.Channel:
    """A channel to a service: TLS trusting `tls_ca` when set, and sending `token` on every call when set."""
    from facerec.security import channel_credentials, client_channel
    from facerec.settings import SettingError

    try:
        return client_channel(address, credentials=channel_credentials(tls_ca), token=token)
    except SettingError as exc:
        raise ClientError(str(exc)) from None


def read_image(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ClientError(f"Cannot read {path}: {exc.strerror or exc}.") from None


def largest(faces: Sequence[detector_pb2.Face]) -> detector_pb2.Face:
    return max(faces, key=lambda f: f.box.width * f.box.height)


class Embedding:
    """Embeds pictures through a running detector and embedder: the largest face of each picture."""

    def __init__(
        self, detector: str, embedder: str, timeout_s: float = 60.0, token: str = "", tls_ca: str = ""
    ) -> None:
        self._addresses = (detector, embedder)
        self._channels = [open_channel(detector, token, tls_ca), open_channel(embedder, token, tls_ca)]
        self._detect = detector_pb2_grpc.DetectorStub(self._channels[0])
        self._embed = embedding_pb2_grpc.EmbedderStub(self._channels[1])
        self._timeout_s = timeout_s

    def close(self) -> None:
        for channel in self._channels:
            channel.close()

    def model_info(self) -> embedding_pb2.ModelInfo:
        try:
            return self._embed.GetModelInfo(embedding_pb2.GetModelInfoRequest(), timeout=self._timeout_s)
        except grpc.RpcError as exc:
            raise describe(exc, "embedder", self._addresses[1]) from None

    def embed_images(
        self, images: Sequence[bytes], alignment: int = detector_pb2.ALIGNMENT_BOX, chunk: int = 8
    ) -> list[NDArray[np.float32] | None]:
        """One unit vector per picture (its largest face), or None where no face was found or it failed."""
        out: list[NDArray[np.float32] | None] = []
        options = detector_pb2.DetectOptions(return_crops=True, alignment=alignment)
        for start in range(0, len(images), chunk):
            request = detector_pb2.DetectRequest(
                images=[common_pb2.Image(data=b) for b in images[start : start + chunk]], options=options
            )
            try:
                results = self._detect.Detect(request, timeout=self._timeout_s).results
            except grpc.RpcError as exc:
                raise describe(exc, "detector", self._addresses[0]) from None
            crops = [largest(r.faces).crop if r.faces and not r.error.code else None for r in results]
            present = [c for c in crops if c is not None]
            vectors = iter(self._embed_crops(present)) if present else iter(())
            out.extend(next(vectors) if c is not None else None for c in crops)
        return out

    def _embed_crops(self, crops: list[common_pb2.RgbImage]) -> list[NDArray[np.float32] | None]:
        request = embedding_pb2.EmbedRequest(faces=[embedding_pb2.FaceInput(crop=c) for c in crops])
        try:
            results = self._embed.Embed(request, timeout=self._timeout_s).results
        except grpc.RpcError as exc:
            raise describe(exc, "embedder", self._addresses[1]) from None
        return [None if r.error.code else np.asarray(r.embedding.values, dtype=np.float32) for r in results]
