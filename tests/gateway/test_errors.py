"""The gRPC status → HTTP mapping is complete and says what the issue lists; transport messages become sentences."""

from __future__ import annotations

import grpc
import pytest

from facerec.status import STATUS
from gateway.errors import HTTP_STATUS, from_rpc, http_status


def test_every_grpc_status_code_has_an_http_status() -> None:
    assert set(HTTP_STATUS) == set(grpc.StatusCode)


def test_every_facerec_error_has_an_http_status_that_is_an_error() -> None:
    for code in STATUS.values():
        assert 400 <= http_status(code) < 600, code


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, 400),
        (grpc.StatusCode.UNAUTHENTICATED, 401),
        (grpc.StatusCode.PERMISSION_DENIED, 403),
        (grpc.StatusCode.NOT_FOUND, 404),
        (grpc.StatusCode.FAILED_PRECONDITION, 409),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
        (grpc.StatusCode.UNAVAILABLE, 503),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 504),
    ],
)
def test_the_mapping_the_api_promises(code: grpc.StatusCode, status: int) -> None:
    assert http_status(code, "The queue is full; try again later.") == status


def test_resource_exhausted_about_size_is_413() -> None:
    assert http_status(grpc.StatusCode.RESOURCE_EXHAUSTED, "Image 0 is too large (30 MiB).") == 413
    assert http_status(grpc.StatusCode.RESOURCE_EXHAUSTED, "x", too_large=True) == 413


class Failed(grpc.aio.AioRpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


@pytest.mark.parametrize(
    ("code", "details", "sentence"),
    [
        (
            grpc.StatusCode.UNAVAILABLE,
            "failed to connect to all addresses; last error: UNKNOWN: Connection refused",
            "The gallery at g:1 is not reachable.",
        ),
        (
            grpc.StatusCode.UNAVAILABLE,
            "The embedder at e:2 is unavailable.",
            "The embedder at e:2 is unavailable.",
        ),
        (
            grpc.StatusCode.DEADLINE_EXCEEDED,
            "Deadline Exceeded",
            "The gallery at g:1 did not answer within 3 s.",
        ),
        (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "Sent message larger than max (9 vs. 4)",
            "The request is larger than the gallery at g:1 accepts.",
        ),
        (grpc.StatusCode.INTERNAL, "boom", "The gallery at g:1 failed (INTERNAL)."),
        (grpc.StatusCode.NOT_FOUND, "No identity named 'x'.", "No identity named 'x'."),
    ],
)
def test_a_failed_call_is_one_sentence(code: grpc.StatusCode, details: str, sentence: str) -> None:
    error = from_rpc(Failed(code, details), "the gallery at g:1", 3.0)
    assert error.code == code and error.message == sentence
