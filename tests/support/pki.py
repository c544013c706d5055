"""A throwaway PKI made at run time with the openssl command (never committed): a test CA, a server
certificate for localhost/127.0.0.1, a client certificate, and a second CA nobody trusts."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_cert: Path  # a client certificate from a CA no server trusts
    rogue_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _ca(folder: Path, name: str) -> None:
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}",
        cwd=folder,
    )  # fmt: skip


def _leaf(folder: Path, name: str, ca: str, extensions: str) -> None:
    (folder / f"{name}.ext").write_text(extensions + "\n")
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
        cwd=folder,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
        cwd=folder,
    )  # fmt: skip


def make_pki(folder: Path, server_ips: Sequence[str] = ("127.0.0.1",)) -> Pki:
    """A throwaway CA with server and client certificates in `folder` (about 0.1 s with EC keys); the
    server certificate names localhost and `server_ips`."""
    folder.mkdir(parents=True, exist_ok=True)
    _ca(folder, "ca")
    _ca(folder, "rogue-ca")
    names = ",".join(["DNS:localhost", *(f"IP:{ip}" for ip in server_ips)])
    _leaf(folder, "server", "ca", f"subjectAltName={names}\nextendedKeyUsage=serverAuth")
    _leaf(folder, "client", "ca", "extendedKeyUsage=clientAuth")
    _leaf(folder, "rogue", "rogue-ca", "extendedKeyUsage=clientAuth")
    return Pki(
        *(folder / n for n in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")),
        folder / "rogue.pem",
        folder / "rogue.key",
    )
