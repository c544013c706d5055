"""Real stacks for the gateway's model tests: detector, embedder and gallery processes, and gateways in front.

Started once per session (the services take a while to load their models) on free ports, with a
temporary store; a second gallery with tokens on shares the same detector and embedder.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from facerec_app.supervisor import Addresses, local_services
from tests.support.servers import Running, start_service

RW_TOKEN = "gateway-test-rw-token-0123456789"
RO_TOKEN = "gateway-test-ro-token-0123456789"


@dataclass(frozen=True)
class Stack:
    services: Addresses
    gateway: Running

    @property
    def url(self) -> str:
        return f"http://{self.gateway.address}"


@pytest.fixture(scope="session")
def stack(fetched_assets) -> Iterator[Stack]:
    with local_services() as services:
        gateway = start_service(
            "gateway",
            ["--gallery", services.gallery, "--detector", services.detector, "--embedder", services.embedder],
        )
        try:
            yield Stack(services, gateway)
        finally:
            gateway.stop()


@pytest.fixture(scope="session")
def secured(stack: Stack, tmp_path_factory) -> Iterator[Stack]:
    """A gallery that requires tokens (one rw, one ro), behind its own gateway."""
    store = tmp_path_factory.mktemp("secured") / "gallery.sqlite"
    gallery = start_service(
        "gallery",
        [
            *("--store", str(store), "--detector", stack.services.detector),
            *("--embedder", stack.services.embedder, "--tokens", f"{RW_TOKEN} rw,{RO_TOKEN} ro"),
        ],
    )
    try:
        gateway = start_service(
            "gateway",
            [
                *("--gallery", gallery.address, "--detector", stack.services.detector),
                *("--embedder", stack.services.embedder),
            ],
        )
        try:
            yield Stack(Addresses(stack.services.detector, stack.services.embedder, gallery.address), gateway)
        finally:
            gateway.stop()
    finally:
        gallery.stop()
