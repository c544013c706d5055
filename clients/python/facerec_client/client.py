"""Gallery: a synchronous client of facerec.v1.Gallery with typed answers, a deadline on every call,
retries of what is safe to retry, TLS, a bearer token and a collection. AsyncGallery (facerec_client.aio) is
the same over grpc.aio; both build their requests and read their answers here (the collections' own calls:
facerec_client.collection_calls)."""

from __future__ import annotations

import ipaddress
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import grpc
from google.protobuf.message import Message

from facerec_client.collection_calls import CollectionCalls
from facerec_client.errors import Busy, FacerecError, Unavailable, from_rpc_error
from facerec_client.pictures import Picture, is_picture, picture_bytes
from facerec_client.results import (
    EnrollResult,
    FaceRecord,
    IdentifyResult,
    Identity,
    SearchHit,
    Stats,
    TrainResult,
    VerifyResult,
)
from facerec_client.v1 import common_pb2, gallery_pb2, gallery_pb2_grpc

DEFAULT_ADDRESS = "127.0.0.1:50053"
DEFAULT_TIMEOUT_S = 60.0
# The environment the one-liners and Gallery.from_env read: the same names as the facerec CLI's.
ENV_ADDRESS, ENV_TOKEN, ENV_TLS_CA = "FACEREC_GALLERY", "FACEREC_TOKEN", "FACEREC_TLS_CA"
ENV_COLLECTION = "FACEREC_COLLECTION"
# Replies carry up to 1000 identities or an identity's embeddings: more than gRPC's default 4 MiB.
MAX_RECEIVE_BYTES = 64 * 1024 * 1024

# Methods that change nothing: sending one twice is harmless, so UNAVAILABLE and BUSY are retried. The
# others (Enroll, RemoveIdentity, RemoveFace, Train) are retried only when the server did none of the work.
IDEMPOTENT = frozenset(
    {"Identify", "Verify", "Search", "ListIdentities", "GetIdentity", "Stats", "Represent"}
    | {"GetFacePicture", "GetCollection", "ListCollections", "GetOperation"}
)

T = TypeVar("T")


@dataclass(frozen=True)
class Retry:
    """How failed calls are retried: at most `attempts` tries in all (1 = never retried), waiting the
    server's RetryInfo delay, or else initial_backoff_s doubling up to max_backoff_s; never past the call's
    deadline. Only UNAVAILABLE and BUSY are retried, a write only when the server never did its work."""

    attempts: int = 3
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 2.0

    def delay_s(self, error: FacerecError, attempt: int, idempotent: bool) -> float | None:
        """Seconds to wait before another try after `error` on try number `attempt`, or None: give up."""
        if attempt >= self.attempts or not isinstance(error, Unavailable | Busy):
            return None
        if not (idempotent or error.never_reached_model):
            return None
        if error.retry_after_s is not None:
            return error.retry_after_s
        return float(min(self.max_backoff_s, self.initial_backoff_s * 2 ** (attempt - 1)))


@dataclass(frozen=True)
class Options:
    """A client's settings: where, how securely, how long a call may take, and its retries.

    tls_ca: the CA file (PEM) to trust; it turns TLS on. tls: TLS with the system's roots, without a CA
    file. token: sent as `authorization: Bearer <token>` on every call. collection: the collection every
    call works on unless the call names another ("" = the gallery's `default`).
    """

    address: str = DEFAULT_ADDRESS
    token: str = ""
    tls_ca: str | os.PathLike[str] | None = None
    tls: bool = False
    timeout_s: float = DEFAULT_TIMEOUT_S
    retry: Retry = field(default_factory=Retry)
    collection: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Options:
        """FACEREC_GALLERY, FACEREC_TOKEN, FACEREC_TLS_CA, FACEREC_COLLECTION (as the facerec CLI reads them);
        keyword overrides win."""
        env = os.environ if environ is None else environ
        found: dict[str, Any] = {
            "address": env.get(ENV_ADDRESS) or DEFAULT_ADDRESS,
            "token": env.get(ENV_TOKEN, ""),
            "tls_ca": env.get(ENV_TLS_CA) or None,
            "collection": env.get(ENV_COLLECTION, ""),
        }
        return cls(**{**found, **overrides})

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    def credentials(self) -> grpc.ChannelCredentials | None:
        """TLS credentials (None: plaintext)."""
        if self.tls_ca:
            try:
                ca = Path(self.tls_ca).read_bytes()
            except OSError as exc:
                raise ValueError(f"Cannot read the CA file {self.tls_ca}: {exc.strerror or exc}.") from None
            return grpc.ssl_channel_credentials(root_certificates=ca)
        return grpc.ssl_channel_credentials() if self.tls else None

    @property
    def target(self) -> str:
        """The gRPC target of `address`: one address or resolver URI ("dns:///gallery:50053": every
        record of the name) as it is, a comma list of literal IPs ("10.0.0.1:50053,10.0.0.2:50053") as
        gRPC's static list ("ipv4:..." or "ipv6:...")."""
        parts = [p.strip() for p in self.address.split(",") if p.strip()]
        if len(parts) <= 1:
            return self.address.strip()
        families = {_family(p) for p in parts}
        if len(families) != 1 or "other" in families:
            raise ValueError(
                f"A list of gallery addresses must be literal IPv4 (or all IPv6) host:port pairs, not "
                f"{self.address!r}; for a name with several records use dns:///name:port."
            )
        return f"{families.pop()}:" + ",".join(parts)

    @property
    def channel_options(self) -> list[tuple[str, str | int]]:
        # round_robin: calls spread over every address of the target (replicas of a stateless gallery).
        return [
            ("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
            ("grpc.service_config", json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})),
        ]


def _family(address: str) -> str:
    host, _, port = address.rpartition(":")
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return "other"
    return "other" if not port.isdigit() else f"ipv{ip.version}"


def _pictures(pictures: Picture | Iterable[Picture]) -> list[bytes]:
    items: list[Picture] = [pictures] if is_picture(pictures) else list(cast(Iterable[Picture], pictures))
    return [picture_bytes(p) for p in items]


def _embedding(values: Iterable[float]) -> common_pb2.Embedding:
    return common_pb2.Embedding(values=[float(v) for v in values])


class Requests:
    """The requests of each method and the readers of their answers, shared by Gallery and AsyncGallery."""

    @staticmethod
    def identity_page(
        name: str, include_embeddings: bool, include_pictures: bool, collection: str
    ) -> gallery_pb2.GetIdentityRequest:
        """The first page's request; each next one is it with the page_token of the answer before."""
        return gallery_pb2.GetIdentityRequest(
            identity=name,
            include_embeddings=include_embeddings,
            include_pictures=include_pictures,
            collection=collection,
        )

    @staticmethod
    def enroll(
        identity: str,
        pictures: Picture | Iterable[Picture],
        embeddings: Iterable[Iterable[float]],
        strict: bool,
        collection: str = "",
    ) -> gallery_pb2.EnrollRequest:
        return gallery_pb2.EnrollRequest(
            identity=identity,
            images=[common_pb2.Image(data=d) for d in _pictures(pictures)],
            embeddings=[_embedding(e) for e in embeddings],
            strict=strict,
            collection=collection,
        )

    @staticmethod
    def identify(
        picture: Picture | None,
        embedding: Iterable[float] | None,
        top_k: int,
        threshold: float,
        operating_point: str,
        collection: str = "",
    ) -> gallery_pb2.IdentifyRequest:
        if (picture is None) == (embedding is None):
            raise ValueError("Identify takes a picture or an embedding (one of them).")
        request = gallery_pb2.IdentifyRequest(
            top_k=top_k, threshold=threshold, operating_point=operating_point, collection=collection
        )
        if picture is not None:
            request.image.data = picture_bytes(picture)
        else:
            request.embedding.CopyFrom(_embedding(embedding or ()))
        return request

    @staticmethod
    def verify(
        a: Picture,
        b: Picture | None,
        identity: str,
        threshold: float,
        operating_point: str,
        collection: str = "",
    ) -> gallery_pb2.VerifyRequest:
        if (b is None) == (not identity):
            raise ValueError("Verify compares a picture with a second picture or an identity (one of them).")
        request = gallery_pb2.VerifyRequest(
            image_a=common_pb2.Image(data=picture_bytes(a)),
            identity=identity,
            threshold=threshold,
            operating_point=operating_point,
            collection=collection,
        )
        if b is not None:
            request.image_b.data = picture_bytes(b)
        return request

    @staticmethod
    def search_hits(reply: gallery_pb2.SearchResponse) -> tuple[SearchHit, ...]:
        return tuple(
            SearchHit(face_id=h.face_id, identity=h.identity, distance=h.distance) for h in reply.hits
        )

    @staticmethod
    def train(reply: gallery_pb2.TrainResponse) -> TrainResult:
        return TrainResult(
            identities=reply.identities, faces=reply.faces, train_accuracy=reply.train_accuracy
        )


class Gallery(CollectionCalls):
    """A client of one gallery (or several replicas behind one address), keeping its channel open.

    Every method takes timeout_s (the whole call, retries included; default Options.timeout_s) and raises
    a facerec_client.FacerecError subclass named after the status, with the server's sentence and reason.
    Every method of a collection's contents takes collection (default Options.collection, "" = `default`).

        with Gallery("127.0.0.1:50053", token=..., tls_ca="ca.pem", collection="door") as gallery:
            gallery.enroll("ann", ["ann1.jpg", "ann2.jpg"])
            print(gallery.identify("group.jpg").faces)
            print(gallery.identify("group.jpg", collection="archive").faces)
    """

    def __init__(
        self, address: str | None = None, *, options: Options | None = None, **settings: Any
    ) -> None:
        """address and settings (token, tls_ca, tls, timeout_s, retry, collection) override `options`
        (default Options())."""
        base = options or Options()
        self.options = Options(**{**base.__dict__, **settings, **({"address": address} if address else {})})
        credentials = self.options.credentials()
        target, opts = self.options.target, self.options.channel_options
        self._channel = (
            grpc.insecure_channel(target, options=opts)
            if credentials is None
            else grpc.secure_channel(target, credentials, options=opts)
        )
        self._what = f"the gallery at {self.options.address}"
        self._stub = gallery_pb2_grpc.GalleryStub(self._channel)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **settings: Any) -> Gallery:
        """A client of FACEREC_GALLERY, with FACEREC_TOKEN and FACEREC_TLS_CA when set."""
        return cls(options=Options.from_env(environ, **settings))

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, name: str, request: Message, reply: type[T], timeout_s: float | None) -> T:
        timeout = self.options.timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout
        method: Callable[..., Any] = getattr(self._stub, name)
        attempt = 0
        while True:
            attempt += 1
            try:
                answer: T = method(
                    request, timeout=max(deadline - time.monotonic(), 0.0), metadata=self.options.metadata
                )
                return answer
            except grpc.RpcError as exc:
                error = from_rpc_error(exc, self._what, timeout)
            delay = self.options.retry.delay_s(error, attempt, name in IDEMPOTENT)
            if delay is None or time.monotonic() + delay >= deadline:
                raise error
            time.sleep(delay)

    def enroll(
        self,
        identity: str,
        pictures: Picture | Iterable[Picture] = (),
        *,
        embeddings: Iterable[Iterable[float]] = (),
        strict: bool = False,
        collection: str | None = None,
        timeout_s: float | None = None,
    ) -> EnrollResult:
        """Enrolls the largest face of each picture (and each ready-made embedding) under `identity`,
        created on first use. One outcome per picture: a picture with no face is an outcome, not an error.
        strict: refuse (INVALID) a picture already enrolled under another identity, rather than warn
        (Enrolled.duplicate_of)."""
        request = Requests.enroll(identity, pictures, embeddings, strict, self._in(collection))
        return EnrollResult.of(self._call("Enroll", request, gallery_pb2.EnrollResponse, timeout_s))

    def identify(
        self,
        picture: Picture | None = None,
        *,
        embedding: Iterable[float] | None = None,
        top_k: int = 0,
        threshold: float = 0.0,
        operating_point: str = "",
        collection: str | None = None,
        timeout_s: float | None = None,
    ) -> IdentifyResult:
        """Who is on the picture (every face), or whose is this embedding. top_k 0: the server's (5);
        threshold 0 and operating_point "": the gallery's identification threshold."""
        request = Requests.identify(
            picture, embedding, top_k, threshold, operating_point, self._in(collection)
        )
        return IdentifyResult.of(self._call("Identify", request, gallery_pb2.IdentifyResponse, timeout_s))

    def verify(
        self,
        a: Picture,
        b: Picture | None = None,
        *,
        identity: str = "",
        threshold: float = 0.0,
        operating_point: str = "",
        collection: str | None = None,
        timeout_s: float | None = None,
    ) -> VerifyResult:
        """Same person? The largest faces of two pictures, or of `a` and an enrolled identity."""
        request = Requests.verify(a, b, identity, threshold, operating_point, self._in(collection))
        return VerifyResult.of(self._call("Verify", request, gallery_pb2.VerifyResponse, timeout_s))

    def search(
        self,
        embedding: Iterable[float],
        *,
        top_k: int = 0,
        collection: str | None = None,
        timeout_s: float | None = None,
    ) -> tuple[SearchHit, ...]:
        """The enrolled faces nearest to an embedding of the gallery's model, nearest first."""
        request = gallery_pb2.SearchRequest(
            embedding=_embedding(embedding), top_k=top_k, collection=self._in(collection)
        )
        return Requests.search_hits(self._call("Search", request, gallery_pb2.SearchResponse, timeout_s))

    def identities(
        self, *, page_size: int = 1000, collection: str | None = None, timeout_s: float | None = None
    ) -> list[Identity]:
        """Every enrolled identity, in name order (all pages; each page has its own deadline)."""
        found: list[Identity] = []
        token = ""
        while True:
            request = gallery_pb2.ListIdentitiesRequest(
                page_size=page_size, page_token=token, collection=self._in(collection)
            )
            page = self._call("ListIdentities", request, gallery_pb2.ListIdentitiesResponse, timeout_s)
            found.extend(Identity.of(i) for i in page.identities)
            token = page.next_page_token
            if not token:
                return found

    def identity(
        self,
        name: str,
        *,
        include_embeddings: bool = False,
        include_pictures: bool = False,
        collection: str | None = None,
        timeout_s: float | None = None,
    ) -> Identity:
        """An enrolled identity with all its faces (and their embeddings when asked: needs a read-write token;
        and their kept pictures when asked). The gallery answers the faces in pages (1000 faces, or 32 with
        their pictures); this reads every page, each with its own deadline."""
        request = Requests.identity_page(name, include_embeddings, include_pictures, self._in(collection))
        faces: list[FaceRecord] = []
        while True:
            reply = self._call("GetIdentity", request, gallery_pb2.GetIdentityResponse, timeout_s)
            faces.extend(FaceRecord.of(f) for f in reply.faces)
            request.page_token = reply.next_page_token
            if not request.page_token:
                return Identity.of(reply.identity, tuple(faces))

    def remove_identity(
        self, name: str, *, collection: str | None = None, timeout_s: float | None = None
    ) -> int:
        """Removes an identity and all its faces; returns how many faces were removed."""
        request = gallery_pb2.RemoveIdentityRequest(identity=name, collection=self._in(collection))
        reply = self._call("RemoveIdentity", request, gallery_pb2.RemoveIdentityResponse, timeout_s)
        return reply.faces_removed

    def remove_face(
        self, face_id: int, *, collection: str | None = None, timeout_s: float | None = None
    ) -> str:
        """Removes one face; returns the identity it belonged to."""
        request = gallery_pb2.RemoveFaceRequest(face_id=face_id, collection=self._in(collection))
        return self._call("RemoveFace", request, gallery_pb2.RemoveFaceResponse, timeout_s).identity

    def train(self, *, collection: str | None = None, timeout_s: float | None = None) -> TrainResult:
        """Refits the SVM on every enrolled face (FailedPrecondition with fewer than two identities)."""
        request = gallery_pb2.TrainRequest(collection=self._in(collection))
        return Requests.train(self._call("Train", request, gallery_pb2.TrainResponse, timeout_s))

    def stats(self, *, collection: str | None = None, timeout_s: float | None = None) -> Stats:
        """Counts, index, model, thresholds and operating points."""
        request = gallery_pb2.StatsRequest(collection=self._in(collection))
        return Stats.of(self._call("Stats", request, gallery_pb2.StatsResponse, timeout_s))


def one_shot(run: Callable[[Gallery], T], environ: Mapping[str, str] | None = None) -> T:
    """Runs `run` with a Gallery.from_env() opened for it and closed after."""
    with Gallery.from_env(environ) as gallery:
        return run(gallery)


__all__: Sequence[str] = ("DEFAULT_ADDRESS", "Gallery", "Options", "Requests", "Retry", "one_shot")
