"""facerec_client against an in-process gallery that answers what a test scripts (fakes are fine here:
the same calls run against the real services in tests/e2e/test_client_wheel.py): typed answers, one
exception per status with the server's sentence and reason, retries of only what is safe, deadlines,
tokens and TLS, pictures as arrays, and the asyncio client."""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from PIL import Image

import facerec_client
from facerec import errors
from facerec.security import TokenAuthInterceptor, server_credentials
from facerec.server import Health, Service, build_server
from facerec.settings import ServerOptions, TlsSettings
from facerec.v1 import common_pb2, gallery_pb2, gallery_pb2_grpc
from facerec_client.errors import CLASS_OF_CODE
from tests.support.pki import make_pki

TOKEN = "a-token-of-sixteen-chars-or-more"


class Scripted(gallery_pb2_grpc.GalleryServicer):
    """A gallery whose methods fail with the queued facerec errors first, then answer; records each call."""

    def __init__(self) -> None:
        self.failures: dict[str, list[errors.FacerecError]] = {}
        self.calls: list[str] = []
        self.metadata: list[dict[str, str]] = []
        self.release = threading.Event()

    def fail(self, method: str, *excs: errors.FacerecError) -> None:
        self.failures[method] = list(excs)

    def _enter(self, method: str, context: grpc.ServicerContext) -> None:
        self.calls.append(method)
        self.metadata.append({k: v for k, v in context.invocation_metadata() if isinstance(v, str)})
        queued = self.failures.get(method)
        if queued:
            raise queued.pop(0)

    def Identify(self, request, context):
        self._enter("Identify", context)
        if request.image.data == b"slow":
            self.release.wait(30)
        known = gallery_pb2.IdentifiedFace(
            identity="ann",
            known=True,
            distance=0.4,
            confidence=0.9,
            box=common_pb2.Box(x=1, y=2, width=30, height=40),
            candidates=[gallery_pb2.Candidate(identity="ann", distance=0.4, face_id=7)],
        )
        stranger = gallery_pb2.IdentifiedFace(
            distance=1.3, candidates=[gallery_pb2.Candidate(identity="bob", distance=1.3, face_id=9)]
        )
        tiny = gallery_pb2.IdentifiedFace(
            not_identifiable=gallery_pb2.FACE_TOO_SMALL, not_identifiable_reason="Too small."
        )
        return gallery_pb2.IdentifyResponse(
            faces=[known, stranger, tiny], threshold=1.1, method="svm", width=len(request.image.data)
        )

    def Verify(self, request, context):
        self._enter("Verify", context)
        same = request.image_a.data == request.image_b.data
        return gallery_pb2.VerifyResponse(match=same, distance=0.0 if same else 1.5, threshold=1.2, faces_a=1)

    def Enroll(self, request, context):
        self._enter("Enroll", context)
        results = [
            gallery_pb2.EnrollResult(outcome=gallery_pb2.ENROLLED, face_id=i + 1, faces_found=1)
            for i, _ in enumerate(request.images)
        ]
        for result, image in zip(results, request.images, strict=True):
            if image.data == b"bob's":  # already enrolled as bob: a warning, or refused when strict
                result.duplicate_of = "bob"
                if request.strict:
                    result.outcome, result.face_id = gallery_pb2.INVALID, 0
        return gallery_pb2.EnrollResponse(identity=request.identity, results=results)

    def RemoveIdentity(self, request, context):
        self._enter("RemoveIdentity", context)
        return gallery_pb2.RemoveIdentityResponse(faces_removed=2)

    def ListIdentities(self, request, context):
        self._enter("ListIdentities", context)
        if not request.page_token:
            return gallery_pb2.ListIdentitiesResponse(
                identities=[gallery_pb2.IdentitySummary(identity="ann", face_count=2)], next_page_token="p2"
            )
        return gallery_pb2.ListIdentitiesResponse(identities=[gallery_pb2.IdentitySummary(identity="bob")])


def serve(
    servicer: Scripted,
    interceptors: list[Any] | None = None,
    credentials: grpc.ServerCredentials | None = None,
) -> tuple[grpc.Server, str]:
    server, port = build_server(
        [
            Service(
                "facerec.v1.Gallery", lambda s: gallery_pb2_grpc.add_GalleryServicer_to_server(servicer, s)
            )
        ],
        ServerOptions(host="127.0.0.1"),
        Health(["facerec.v1.Gallery"]),
        interceptors=interceptors or [],
        credentials=credentials,
    )
    server.start()
    return server, f"127.0.0.1:{port}"


@pytest.fixture
def gallery() -> Iterator[tuple[Scripted, str]]:
    servicer = Scripted()
    server, address = serve(servicer)
    yield servicer, address
    servicer.release.set()
    server.stop(0)


def fast(address: str, **settings: Any) -> facerec_client.Gallery:
    """A client whose retries wait little (the server's RetryInfo is honoured where it sends one)."""
    retry = facerec_client.Retry(attempts=3, initial_backoff_s=0.01, max_backoff_s=0.02)
    return facerec_client.Gallery(address, **{"retry": retry, "timeout_s": 20.0, **settings})


def test_every_status_but_ok_has_its_exception_class_and_each_class_its_status() -> None:
    assert set(CLASS_OF_CODE) == set(grpc.StatusCode) - {grpc.StatusCode.OK}
    classes = {
        facerec_client.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
        facerec_client.NotFound: grpc.StatusCode.NOT_FOUND,
        facerec_client.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
        facerec_client.TooLarge: grpc.StatusCode.RESOURCE_EXHAUSTED,
        facerec_client.Busy: grpc.StatusCode.RESOURCE_EXHAUSTED,
        facerec_client.Unavailable: grpc.StatusCode.UNAVAILABLE,
        facerec_client.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
        facerec_client.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
        facerec_client.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
        facerec_client.Internal: grpc.StatusCode.INTERNAL,
    }
    for cls, code in classes.items():
        assert cls.code == code and issubclass(cls, facerec_client.FacerecError)


def test_answers_are_typed_dataclasses_with_unknown_faces_as_none(gallery: tuple[Scripted, str]) -> None:
    _, address = gallery
    with fast(address) as client:
        found = client.identify(b"picture", top_k=3)
        known, stranger, tiny = found.faces
        assert isinstance(found, facerec_client.IdentifyResult)
        assert (known.identity, known.known, known.box) == ("ann", True, facerec_client.Box(1, 2, 30, 40))
        assert known.candidates == (facerec_client.Candidate("ann", pytest.approx(0.4), 7),)
        assert (stranger.identity, stranger.known, stranger.candidates[0].identity) == (None, False, "bob")
        assert tiny.not_identifiable == facerec_client.NotIdentifiable.FACE_TOO_SMALL
        assert known.not_identifiable == facerec_client.NotIdentifiable.NO and not known.not_identifiable
        assert (found.method, found.threshold) == ("svm", pytest.approx(1.1))
        with pytest.raises(AttributeError):
            found.method = "x"  # type: ignore[misc]  # frozen
        enrolled = client.enroll("ann", [b"one", b"two"])
        assert enrolled.face_ids == (1, 2)
        assert all(
            r.outcome is facerec_client.EnrollOutcome.ENROLLED and r.outcome.stored for r in enrolled.results
        )
        assert client.verify(b"x", b"x").match and not client.verify(b"x", b"y").match
        assert [i.name for i in client.identities()] == ["ann", "bob"]  # both pages
        assert client.remove_identity("ann") == 2


def test_a_picture_enrolled_under_another_identity_is_a_warning_or_refused_when_strict(
    gallery: tuple[Scripted, str],
) -> None:
    _, address = gallery
    with fast(address) as client:
        (warned,) = client.enroll("ann", b"bob's").results
        (refused,) = client.enroll("ann", b"bob's", strict=True).results
    assert (warned.outcome, warned.duplicate_of, warned.face_id) == (
        facerec_client.EnrollOutcome.ENROLLED,
        "bob",
        1,
    )
    assert (refused.outcome, refused.duplicate_of, refused.face_id) == (
        facerec_client.EnrollOutcome.INVALID,
        "bob",
        None,
    )


def test_a_status_becomes_its_class_with_the_servers_sentence_and_reason(
    gallery: tuple[Scripted, str],
) -> None:
    servicer, address = gallery
    servicer.fail(
        "Identify", errors.TooLarge("The picture is 9000x9000 px; at most 40 Mpx.", reason="IMAGE_TOO_LARGE")
    )
    servicer.fail("Verify", errors.InvalidInput("image_a holds no face.", reason="NO_FACE"))
    servicer.fail("RemoveIdentity", errors.NotFound("No identity named zed."))
    with fast(address) as client:
        with pytest.raises(facerec_client.TooLarge) as too_large:
            client.identify(b"huge")
        assert (str(too_large.value), too_large.value.reason) == (
            "The picture is 9000x9000 px; at most 40 Mpx.",
            "IMAGE_TOO_LARGE",
        )
        assert too_large.value.retry_after_s is None
        with pytest.raises(facerec_client.InvalidArgument) as no_face:
            client.verify(b"a", b"b")
        assert no_face.value.reason == "NO_FACE"
        with pytest.raises(facerec_client.NotFound, match="No identity named zed."):
            client.remove_identity("zed")
        assert client.identify(b"fine").faces  # the server still answers
    assert servicer.calls == ["Identify", "Verify", "RemoveIdentity", "Identify"]  # none retried


def test_busy_reads_are_retried_after_the_servers_delay_and_then_answered(
    gallery: tuple[Scripted, str],
) -> None:
    servicer, address = gallery
    busy = errors.Overloaded("The queue is full; retry later.", retry_after_s=0.05)
    servicer.fail("Identify", busy, errors.Unavailable("The detector is not reachable.", retry_after_s=0.01))
    with fast(address) as client:
        assert client.identify(b"picture").faces
    assert servicer.calls == ["Identify"] * 3


def test_a_busy_error_carries_its_retry_delay_once_retries_are_spent(gallery: tuple[Scripted, str]) -> None:
    servicer, address = gallery
    servicer.fail("Identify", *[errors.Overloaded("The queue is full; retry later.", retry_after_s=0.01)] * 3)
    with fast(address) as client, pytest.raises(facerec_client.Busy) as busy:
        client.identify(b"picture")
    assert (busy.value.reason, busy.value.retry_after_s) == ("BUSY", pytest.approx(0.01))
    assert isinstance(busy.value, facerec_client.ResourceExhausted)
    assert servicer.calls == ["Identify"] * 3


def test_a_write_is_retried_only_when_the_server_did_none_of_its_work(gallery: tuple[Scripted, str]) -> None:
    servicer, address = gallery
    # Busy: refused before any work ("nothing of this request was stored"): sending it again is safe.
    servicer.fail(
        "Enroll", errors.Overloaded("The store's disk is full; nothing was stored.", retry_after_s=0.01)
    )
    # Unavailable mid-call: it may have been done; a second RemoveIdentity could answer NOT_FOUND for it.
    servicer.fail("RemoveIdentity", errors.Unavailable("The store is not reachable.", retry_after_s=0.01))
    with fast(address) as client:
        assert client.enroll("ann", b"one").face_ids == (1,)
        with pytest.raises(facerec_client.Unavailable):
            client.remove_identity("ann")
    assert servicer.calls == ["Enroll", "Enroll", "RemoveIdentity"]


def test_a_gallery_that_is_not_there_is_unavailable_in_one_sentence_naming_it(dead: str) -> None:
    address = dead
    with fast(address, timeout_s=5.0) as client, pytest.raises(facerec_client.Unavailable) as down:
        client.enroll("ann", b"one")
    assert str(down.value) == f"The gallery at {address} is not reachable."
    assert down.value.never_sent and down.value.reason == ""


def test_the_deadline_of_a_call_is_the_clients_and_each_call_can_set_its_own(
    gallery: tuple[Scripted, str],
) -> None:
    servicer, address = gallery
    with fast(address) as client:
        with pytest.raises(facerec_client.DeadlineExceeded) as late:
            client.identify(b"slow", timeout_s=0.2)
        assert str(late.value) == f"The gallery at {address} did not answer within 0.2 s."
        servicer.release.set()
        assert client.identify(b"fast").faces
    assert servicer.calls == ["Identify", "Identify"]  # a deadline is not retried


def test_the_token_goes_as_a_bearer_header_that_the_services_accept() -> None:
    servicer = Scripted()
    server, address = serve(servicer, [TokenAuthInterceptor({TOKEN: "ro"}, ["/facerec.v1.Gallery/Enroll"])])
    try:
        with fast(address, token=TOKEN) as client:
            assert client.identify(b"picture").faces
            with pytest.raises(facerec_client.PermissionDenied) as denied:
                client.enroll("ann", b"one")
            assert denied.value.reason == "PERMISSION_DENIED"
        with fast(address) as anonymous, pytest.raises(facerec_client.Unauthenticated) as refused:
            anonymous.identify(b"picture")
        assert refused.value.reason == "UNAUTHENTICATED"
        assert servicer.metadata[0]["authorization"] == f"Bearer {TOKEN}"
    finally:
        server.stop(0)


def test_tls_trusts_the_ca_file_it_is_given(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    servicer = Scripted()
    credentials = server_credentials(TlsSettings(cert=str(pki.server_cert), key=str(pki.server_key)))
    server, address = serve(servicer, credentials=credentials)
    try:
        with fast(address, tls_ca=pki.ca) as client:
            assert client.identify(b"picture").faces
        with fast(address, timeout_s=3.0) as plaintext, pytest.raises(facerec_client.Unavailable):
            plaintext.identify(b"picture")
        with pytest.raises(ValueError, match=r"^Cannot read the CA file .*missing.pem: No such file"):
            fast(address, tls_ca=tmp_path / "missing.pem")
    finally:
        server.stop(0)


def test_the_clients_own_google_rpc_messages_live_beside_googleapis_ones_in_one_process() -> None:
    # This process has loaded googleapis-common-protos' google/rpc files (facerec.status uses them): the
    # client's copy lives in a pool of its own, so neither refuses the other, and each reads the other's bytes.
    from google.rpc import error_details_pb2

    from facerec_client.errors import ErrorInfo

    theirs = error_details_pb2.ErrorInfo(reason="BUSY", domain="facerec")
    assert ErrorInfo.FromString(theirs.SerializeToString()).reason == "BUSY"
    assert ErrorInfo.DESCRIPTOR.full_name == error_details_pb2.ErrorInfo.DESCRIPTOR.full_name
    assert ErrorInfo is not error_details_pb2.ErrorInfo


def decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


@pytest.mark.parametrize(
    "make",
    [
        lambda a: a,
        lambda a: np.ascontiguousarray(a[:, ::-1])[:, ::-1],  # a strided view (negative step)
        lambda a: Image.fromarray(a),
        lambda a: memoryview(a),
    ],
    ids=["numpy", "strided", "pillow", "memoryview"],
)
def test_an_array_picture_is_sent_as_a_png_of_exactly_its_pixels(make: Callable[[Any], Any]) -> None:
    from facerec_client.pictures import picture_bytes

    rgb = np.random.default_rng(7).integers(0, 256, (6, 9, 3), dtype=np.uint8)
    assert np.array_equal(decoded(picture_bytes(make(rgb))), rgb)


def test_an_array_of_another_type_or_shape_is_refused_before_sending(tmp_path: Path) -> None:
    from facerec_client.pictures import picture_bytes

    with pytest.raises(ValueError, match="uint8"):
        picture_bytes(np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        picture_bytes(np.zeros((4, 4, 2), dtype=np.uint8))
    path = tmp_path / "p.png"
    path.write_bytes(b"file bytes")
    assert picture_bytes(path) == picture_bytes(str(path)) == b"file bytes"


def test_the_one_liners_use_the_gallery_named_by_the_environment(
    gallery: tuple[Scripted, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    servicer, address = gallery
    monkeypatch.setenv("FACEREC_GALLERY", address)
    monkeypatch.setenv("FACEREC_TOKEN", TOKEN)
    rgb = np.zeros((8, 8, 3), dtype=np.uint8)
    assert facerec_client.verify(rgb, rgb).match
    assert facerec_client.identify(b"picture").faces[0].identity == "ann"
    assert facerec_client.enroll("ann", [b"one", rgb]).face_ids == (1, 2)
    assert servicer.calls == ["Verify", "Identify", "Enroll"]
    assert {m["authorization"] for m in servicer.metadata} == {f"Bearer {TOKEN}"}


def test_the_asyncio_client_answers_maps_errors_and_retries_alike(gallery: tuple[Scripted, str]) -> None:
    servicer, address = gallery
    servicer.fail("Identify", errors.Overloaded("The queue is full; retry later.", retry_after_s=0.01))
    servicer.fail("Verify", errors.InvalidInput("image_a holds no face.", reason="NO_FACE"))

    async def run() -> tuple[facerec_client.IdentifyResult, facerec_client.FacerecError, list[str]]:
        async with facerec_client.AsyncGallery(address, timeout_s=20.0) as client:
            found = await client.identify(b"picture")
            try:
                await client.verify(b"a", b"b")
            except facerec_client.FacerecError as exc:
                error = exc
            names = [i.name for i in await client.identities()]
            return found, error, names

    found, error, names = asyncio.run(run())
    assert found.faces[0].identity == "ann" and names == ["ann", "bob"]
    assert isinstance(error, facerec_client.InvalidArgument) and error.reason == "NO_FACE"
    assert servicer.calls == ["Identify", "Identify", "Verify", "ListIdentities", "ListIdentities"]


def test_a_list_of_gallery_replicas_gets_its_calls_spread_over_all() -> None:
    replicas = [Scripted(), Scripted()]
    served = [serve(r) for r in replicas]
    try:
        with fast(",".join(address for _, address in served)) as client:
            # round_robin takes a replica in once it is connected: a bounded number of calls reaches both.
            for _ in range(200):
                assert client.identify(b"picture").faces
                if all(r.calls for r in replicas):
                    break
        assert all(r.calls for r in replicas), [len(r.calls) for r in replicas]
        with pytest.raises(ValueError, match="dns:///"):
            facerec_client.Gallery("gallery-a:50053,gallery-b:50053")
    finally:
        for server, _ in served:
            server.stop(0)
