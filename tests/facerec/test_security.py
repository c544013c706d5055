"""facerec.security on a real in-process server: TLS, mutual TLS, bearer tokens and roles, open probes.

Certificates are made at run time with the openssl command (never committed): a test CA, a server
certificate for localhost/127.0.0.1, a client certificate, and a second CA nobody trusts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from facerec import security
from facerec.channels import open_channel
from facerec.server import Health, Service, build_server
from facerec.settings import ServerOptions, SettingError
from facerec.v1 import gallery_pb2, gallery_pb2_grpc
from gallery.service import WRITE_METHODS
from tests.support.pki import Pki, make_pki

RW = "rw-token-0123456789abcdef"
RO = "ro-token-0123456789abcdef"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


class TinyGallery(gallery_pb2_grpc.GalleryServicer):
    """Answers Stats (a read) and Train (a write) so roles can be told apart."""

    def Stats(self, request, context):
        return gallery_pb2.StatsResponse(faces=3)

    def Train(self, request, context):
        return gallery_pb2.TrainResponse()

    def Represent(self, request, context):
        return gallery_pb2.RepresentResponse(model="m")

    def GetIdentity(self, request, context):
        face = gallery_pb2.FaceRecord(face_id=1, identity=request.identity)
        if request.include_embeddings:
            face.embedding.values.extend([0.5, 0.5])
        return gallery_pb2.GetIdentityResponse(faces=[face])


@dataclass
class Served:
    server: grpc.Server
    port: int

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture()
def serve() -> Iterator:
    started: list[grpc.Server] = []

    def start(tls: security.TlsSettings | None = None, tokens: str = "") -> Served:
        health = Health(["facerec.v1.Gallery"])
        health.set_serving()
        server, port = build_server(
            [
                Service(
                    "facerec.v1.Gallery",
                    lambda s: gallery_pb2_grpc.add_GalleryServicer_to_server(TinyGallery(), s),
                )
            ],
            ServerOptions(host="127.0.0.1"),
            health,
            interceptors=security.token_interceptor("", tokens, WRITE_METHODS),
            credentials=security.server_credentials(tls or security.TlsSettings()),
        )
        server.start()
        started.append(server)
        return Served(server, port)

    yield start
    for server in started:
        server.stop(0)


def stats(channel: grpc.Channel) -> int:
    return gallery_pb2_grpc.GalleryStub(channel).Stats(gallery_pb2.StatsRequest(), timeout=5).faces


def code_of(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code()


def test_tls_serves_trusting_clients_and_refuses_plaintext(pki: Pki, serve) -> None:
    served = serve(security.TlsSettings(str(pki.server_cert), str(pki.server_key)))
    with open_channel(served.target, credentials=security.channel_credentials(str(pki.ca))) as ch:
        assert stats(ch) == 3
    with grpc.insecure_channel(served.target) as plain:
        assert code_of(lambda: stats(plain)) == grpc.StatusCode.UNAVAILABLE
    # A client that trusts another CA does not accept this server.
    rogue_trust = security.channel_credentials(str(pki.rogue_cert.with_name("rogue-ca.pem")))
    with open_channel(served.target, credentials=rogue_trust) as ch:
        assert code_of(lambda: stats(ch)) == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_requires_a_client_certificate_from_the_trusted_ca(pki: Pki, serve) -> None:
    served = serve(security.TlsSettings(str(pki.server_cert), str(pki.server_key), str(pki.ca)))
    anonymous = security.channel_credentials(str(pki.ca))
    rogue = security.channel_credentials(str(pki.ca), str(pki.rogue_cert), str(pki.rogue_key))
    good = security.channel_credentials(str(pki.ca), str(pki.client_cert), str(pki.client_key))
    for credentials in (anonymous, rogue):
        with open_channel(served.target, credentials=credentials) as ch:
            assert code_of(lambda ch=ch: stats(ch)) == grpc.StatusCode.UNAVAILABLE
    with open_channel(served.target, credentials=good) as ch:
        assert stats(ch) == 3


def test_tokens_and_roles_with_open_health_and_reflection(serve) -> None:
    served = serve(tokens=f"{RW} rw, {RO} ro")
    with grpc.insecure_channel(served.target) as ch:
        assert code_of(lambda: stats(ch)) == grpc.StatusCode.UNAUTHENTICATED
        health = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

        listing = next(
            reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
            )
        )
        assert "facerec.v1.Gallery" in {s.name for s in listing.list_services_response.service}
    for token in ("", "wrong-token-0123456789", RW[:-1], RW + "x"):
        with open_channel(served.target, token=token) as ch:
            assert code_of(lambda ch=ch: stats(ch)) == grpc.StatusCode.UNAUTHENTICATED
    with open_channel(served.target, token=RO) as ch:
        assert stats(ch) == 3
        train = gallery_pb2_grpc.GalleryStub(ch).Train
        denied = code_of(lambda: train(gallery_pb2.TrainRequest(), timeout=5))
        assert denied == grpc.StatusCode.PERMISSION_DENIED
        # Represent's templates come from the caller's own picture, nothing stored: read-only suffices.
        represent = gallery_pb2_grpc.GalleryStub(ch).Represent
        assert represent(gallery_pb2.RepresentRequest(), timeout=5).model == "m"
    with open_channel(served.target, token=RW) as ch:
        gallery_pb2_grpc.GalleryStub(ch).Train(gallery_pb2.TrainRequest(), timeout=5)
        assert stats(ch) == 3
    # Other spellings of the header: the scheme is case-insensitive; a bare token is not a bearer token.
    with grpc.insecure_channel(served.target) as ch:
        stub = gallery_pb2_grpc.GalleryStub(ch)
        reply = stub.Stats(
            gallery_pb2.StatsRequest(), metadata=[("authorization", f"bearer {RO}")], timeout=5
        )
        assert reply.faces == 3
        bare = code_of(
            lambda: stub.Stats(gallery_pb2.StatsRequest(), metadata=[("authorization", RO)], timeout=5)
        )
        assert bare == grpc.StatusCode.UNAUTHENTICATED


def test_token_and_tls_together(pki: Pki, serve) -> None:
    served = serve(security.TlsSettings(str(pki.server_cert), str(pki.server_key)), tokens=f"{RW} rw")
    credentials = security.channel_credentials(str(pki.ca))
    with open_channel(served.target, credentials=credentials, token=RW) as ch:
        assert stats(ch) == 3
    with open_channel(served.target, credentials=credentials) as ch:
        assert code_of(lambda: stats(ch)) == grpc.StatusCode.UNAUTHENTICATED


def test_token_files_and_bad_settings(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"# who may call\n{RW} rw\n\n{RO} ro  # the dashboard\n")
    assert security.load_tokens(str(path)) == {RW: "rw", RO: "ro"}
    assert security.load_tokens(str(path), "another-token-0123456789 ro")["another-token-0123456789"] == "ro"
    assert security.load_tokens() == {}
    assert security.token_interceptor("", "") == []
    bad = [
        f"{RW}",  # no role
        f"{RW} superuser",  # unknown role
        "short ro",  # too short to be secret
        f"{RW}\u00e9 rw",  # not ASCII
    ]
    for text in bad:
        with pytest.raises(SettingError):
            security.parse_tokens(text, "TOKENS")
    empty = tmp_path / "empty"
    empty.write_text("# nothing\n")
    for call in (
        lambda: security.load_tokens(str(empty), prefix="GALLERY_"),
        lambda: security.load_tokens(str(tmp_path / "missing")),
        lambda: security.server_credentials(security.TlsSettings(cert="a.pem")),
        lambda: security.server_credentials(security.TlsSettings(client_ca="ca.pem")),
        lambda: security.server_credentials(
            security.TlsSettings(str(tmp_path / "no.pem"), str(tmp_path / "no"))
        ),
        lambda: security.channel_credentials("", "c.pem", "c.key"),
        lambda: security.channel_credentials("ca.pem", "c.pem"),
    ):
        with pytest.raises(SettingError):
            call()
    assert security.channel_credentials() is None
    assert security.server_credentials(security.TlsSettings()) is None


def test_the_role_check_compares_every_token() -> None:
    auth = security.TokenAuthInterceptor({RW: "rw", RO: "ro"}, WRITE_METHODS)
    assert (auth.role_of(RW), auth.role_of(RO), auth.role_of(""), auth.role_of(RW[:8])) == (
        "rw",
        "ro",
        None,
        None,
    )
    assert security.bearer([("authorization", f"Bearer  {RW} ")]) == RW
    assert security.bearer([("authorization", f"Basic {RW}")]) == ""
    assert security.bearer(None) == ""


def test_reading_stored_embeddings_needs_an_rw_token(serve) -> None:
    served = serve(tokens=f"{RW} rw,{RO} ro")
    templates = gallery_pb2.GetIdentityRequest(identity="ada", include_embeddings=True)
    plain = gallery_pb2.GetIdentityRequest(identity="ada")
    with open_channel(served.target, token=RO) as ro, open_channel(served.target, token=RW) as rw:
        with pytest.raises(grpc.RpcError) as info:
            gallery_pb2_grpc.GalleryStub(ro).GetIdentity(templates, timeout=5)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        # The same token reads the identity without the templates, and an rw token reads them.
        assert (
            not gallery_pb2_grpc.GalleryStub(ro).GetIdentity(plain, timeout=5).faces[0].HasField("embedding")
        )
        answer = gallery_pb2_grpc.GalleryStub(rw).GetIdentity(templates, timeout=5)
        assert list(answer.faces[0].embedding.values) == [0.5, 0.5]
