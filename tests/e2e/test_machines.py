"""docs/deploy-machines.md, run on one machine: each service on its own loopback address (the detector on
127.0.0.2, the embedder on 127.0.0.3, the gallery on 127.0.0.4, the gateway on 127.0.0.5), TLS from one
private CA between them, tokens on every gRPC service, the store in a real PostgreSQL, as that recipe
starts them; a picture is enrolled and identified through it from the CLI and through the gateway."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from facerec_app.supervisor import ServiceProcess, shared_cores_env
from tests.support.pki import Pki, make_pki

pytestmark = pytest.mark.model

ADDRESSES = {"detector": "127.0.0.2", "embedder": "127.0.0.3", "gallery": "127.0.0.4", "gateway": "127.0.0.5"}
MODULES = {
    "detector": "detector_service",
    "embedder": "embedding_service",
    "gallery": "gallery",
    "gateway": "gateway",
}
INFERENCE_TOKEN = "inference-" + uuid.uuid4().hex
ADMIN_TOKEN = "admin-" + uuid.uuid4().hex


@dataclass(frozen=True)
class Layout:
    addresses: dict[str, str]  # service -> host:port
    pki: Pki
    processes: dict[str, ServiceProcess]


def start(service: str, env: dict[str, str], *args: str) -> ServiceProcess:
    return ServiceProcess.start(MODULES[service], ["--host", ADDRESSES[service], "--port", "0", *args], env)


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory, postgres_cluster, fetched_assets) -> Iterator[Layout]:
    folder = tmp_path_factory.mktemp("machines")
    pki = make_pki(folder / "pki", server_ips=list(ADDRESSES.values()))
    (folder / "inference.tokens").write_text(f"{INFERENCE_TOKEN} ro\n")
    (folder / "gallery.tokens").write_text(f"{ADMIN_TOKEN} rw\n")
    base = {**os.environ, **shared_cores_env(os.environ), "FACEREC_HOME": str(fetched_assets.home)}
    tls = {"TLS_CERT": str(pki.server_cert), "TLS_KEY": str(pki.server_key)}
    inference = {f"{p}{k}": v for p in ("DETECTOR_", "EMBEDDER_") for k, v in tls.items()} | {
        "DETECTOR_TOKENS_FILE": str(folder / "inference.tokens"),
        "EMBEDDER_TOKENS_FILE": str(folder / "inference.tokens"),
    }
    processes: dict[str, ServiceProcess] = {}
    addresses: dict[str, str] = {}
    try:
        # The detector and the embedder load their models side by side.
        for name in ("detector", "embedder"):
            processes[name] = start(name, {**base, **inference})
        for name in ("detector", "embedder"):
            addresses[name] = f"{ADDRESSES[name]}:{processes[name].wait_ready(300)}"
        gallery_env = {
            **base,
            **{f"GALLERY_{k}": v for k, v in tls.items()},
            "GALLERY_TOKENS_FILE": str(folder / "gallery.tokens"),
            "GALLERY_DOWNSTREAM_TLS_CA": str(pki.ca),
            "GALLERY_DOWNSTREAM_TOKEN": INFERENCE_TOKEN,
            "GALLERY_STORE": postgres_cluster.new_database(),
            "GALLERY_INDEX": "faiss",
        }
        processes["gallery"] = start(
            "gallery",
            gallery_env,
            *("--detector", addresses["detector"], "--embedder", addresses["embedder"]),
            *("--calibration", str(folder / "calibration.json")),
        )
        addresses["gallery"] = f"{ADDRESSES['gallery']}:{processes['gallery'].wait_ready(180)}"
        gateway_env = {
            **base,
            "GATEWAY_TLS_CA": str(pki.ca),
            "GATEWAY_GALLERY": addresses["gallery"],
            "GATEWAY_DETECTOR": addresses["detector"],
            "GATEWAY_EMBEDDER": addresses["embedder"],
            # Its callers name it by its address: a Host the gateway serves only when told (DNS rebinding).
            "GATEWAY_ALLOWED_HOSTS": ADDRESSES["gateway"],
        }
        processes["gateway"] = start("gateway", gateway_env)
        addresses["gateway"] = f"{ADDRESSES['gateway']}:{processes['gateway'].wait_ready(120)}"
        yield Layout(addresses, pki, processes)
    finally:
        for process in reversed(processes.values()):
            process.stop()


def facerec(layout: Layout, *args: str, token: str = ADMIN_TOKEN) -> subprocess.CompletedProcess:
    env = {**os.environ, "FACEREC_TLS_CA": str(layout.pki.ca), "FACEREC_TOKEN": token}
    return subprocess.run(
        [sys.executable, "-m", "facerec_app.cli", *args, "--gallery", layout.addresses["gallery"]],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )


def listening(pid: int) -> set[tuple[str, int]]:
    """The (address, port) pairs the process `pid` listens on, from its own sockets (/proc): not a connection
    to a port, which another process on the machine may have bound on another address since. gRPC listens on
    IPv6 sockets, an IPv4 address as ::ffff:a.b.c.d; those are given as a.b.c.d."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = set()
    rows = [
        row
        for table in ("tcp", "tcp6")
        for row in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
    ]
    for row in rows:
        fields = row.split()
        local, state, inode = fields[1], fields[3], fields[9]
        if state != "0A" or inode not in inodes:  # 0A: LISTEN
            continue
        hex_ip, hex_port = local.split(":")
        # Each 32-bit word of the address is in the host's (little-endian) order.
        raw = b"".join(bytes.fromhex(hex_ip[i : i + 8])[::-1] for i in range(0, len(hex_ip), 8))
        if len(raw) == 16 and raw[:12] == b"\0" * 10 + b"\xff\xff":
            raw = raw[12:]
        family = socket.AF_INET if len(raw) == 4 else socket.AF_INET6
        found.add((socket.inet_ntop(family, raw), int(hex_port, 16)))
    return found


def test_each_service_listens_on_its_own_address_only(layout: Layout) -> None:
    for name, address in layout.addresses.items():
        host, port = address.rsplit(":", 1)
        assert host == ADDRESSES[name]
        with socket.create_connection((host, int(port)), timeout=10):
            pass
        # Only there, not on 127.0.0.1 or every address: `--host` gave each its own address, as each machine
        # gets its own. (Connecting to 127.0.0.1:port once checked this, until another test's server took
        # that port number on 127.0.0.1 at the same time.)
        assert listening(layout.processes[name].process.pid) == {(host, int(port))}, name


def test_a_picture_is_enrolled_and_identified_through_the_layout_over_tls(
    layout: Layout, train_images, val_images
) -> None:
    for person in ("madonna", "ben_afflek"):
        pictures = [str(p) for who, p in train_images if who == person][:5]
        done = facerec(layout, "enroll", "--identity", person, *pictures)
        assert done.returncode == 0, done.stderr
    picture = next(p for who, p in val_images if who == "madonna")
    done = facerec(layout, "identify", str(picture), "--json")
    assert done.returncode == 0, done.stderr
    (reply,) = json.loads(done.stdout)
    best = max(reply["faces"], key=lambda f: f["box"]["width"] * f["box"]["height"])
    assert (best["known"], best["identity"]) == (True, "madonna")
    # Without the token the gallery refuses; without the CA the TLS handshake does.
    refused = facerec(layout, "list", token="")
    assert refused.returncode != 0 and "token" in refused.stderr
    plain = subprocess.run(
        [sys.executable, "-m", "facerec_app.cli", "list", "--gallery", layout.addresses["gallery"]],
        capture_output=True,
        text=True,
        env={**os.environ, "FACEREC_TLS_CA": "", "FACEREC_TOKEN": ADMIN_TOKEN},
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert plain.returncode != 0 and "not reachable" in plain.stderr
    # Through the gateway: HTTP to it, TLS from it to the gallery, the caller's token passed on.
    boundary = "facerec-machines"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="face.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + picture.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        f"http://{layout.addresses['gateway']}/v1/identify",
        data=body,
        headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Authorization": f"Bearer {ADMIN_TOKEN}",
        },
    )
    with urllib.request.urlopen(request, timeout=120) as answer:
        faces = json.loads(answer.read())["faces"]
    best = max(faces, key=lambda f: f["box"]["width"] * f["box"]["height"])
    assert (best["known"], best["identity"]) == (True, "madonna")
