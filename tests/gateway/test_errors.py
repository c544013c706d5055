"""The error → HTTP mapping is complete and says what the issue lists; reasons, not words, tell 413 from
429; transport messages become sentences."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import json_format
from grpc_status import rpc_status

from facerec import errors
from facerec.status import STATUS, rich_status, status_of
from gateway.errors import (
    HTTP_OF_ERROR,
    HTTP_STATUS,
    body,
    from_rpc,
    headers,
    http_status,
    reasons_table,
    request_id_of,
)
from tests.readme import README


def test_every_grpc_status_code_has_an_http_status() -> None:
    assert set(HTTP_STATUS) == set(grpc.StatusCode)


def test_every_facerec_error_has_an_http_status_that_is_an_error() -> None:
    assert set(HTTP_OF_ERROR) == set(STATUS)
    for cls in STATUS:
        assert 400 <= http_status(cls("x")) < 600, cls


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.InvalidInput, 400),
        (errors.Unauthenticated, 401),
        (errors.PermissionDenied, 403),
        (errors.NotFound, 404),
        (errors.Precondition, 409),
        (errors.TooLarge, 413),
        (errors.Overloaded, 429),
        (errors.Unavailable, 503),
        (errors.DeadlineExceeded, 504),
    ],
)
def test_the_mapping_the_api_promises(error: type[errors.FacerecError], status: int) -> None:
    # The status a service sends for the error, read back as the gateway reads it.
    back = from_rpc(Failed.rich(error("The service says so.")), "the gallery", 3.0)
    assert type(back) is error and http_status(back) == status


def test_too_large_is_413_for_ever_and_busy_is_429_with_retry_after_whatever_the_words() -> None:
    # The same words both times: only the reason the server sent decides.
    words = "Image 0 is too large; try again later."
    large = from_rpc(Failed.rich(errors.TooLarge(words, reason=errors.Reason.IMAGE_TOO_LARGE)), "g", 3.0)
    busy = from_rpc(Failed.rich(errors.Overloaded(words)), "g", 3.0)
    assert isinstance(large, errors.TooLarge) and http_status(large) == 413
    assert body(large) == {
        "code": "RESOURCE_EXHAUSTED",
        "message": words,
        "reason": "IMAGE_TOO_LARGE",
        "details": [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "IMAGE_TOO_LARGE",
                "domain": "facerec",
            }
        ],
        "request_id": "",
    }
    assert "Retry-After" not in headers(large)
    assert isinstance(busy, errors.Overloaded) and http_status(busy) == 429
    assert body(busy)["reason"] == "BUSY" and headers(busy)["Retry-After"] == "1"


def test_grpcs_own_message_size_refusal_is_413_not_a_retry() -> None:
    error = from_rpc(Failed(grpc.StatusCode.RESOURCE_EXHAUSTED, "Received message larger than max"), "g", 1)
    assert http_status(error) == 413 and error.reason == "REQUEST_TOO_LARGE"


class Failed(grpc.aio.AioRpcError):
    def __init__(self, code: grpc.StatusCode, details: str, trailer: grpc.aio.Metadata | None = None) -> None:
        super().__init__(code, grpc.aio.Metadata(), trailer or grpc.aio.Metadata(), details)

    @classmethod
    def rich(cls, exc: errors.FacerecError) -> Failed:
        """The call as a facerec server fails it: code, sentence and details."""
        status = rich_status(exc)
        return cls(status.code, status.details, grpc.aio.Metadata(*status.trailing_metadata))


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
    assert status_of(error) == code and str(error) == sentence


def test_a_field_the_service_names_comes_back_as_a_bad_request_violation_in_both_faces() -> None:
    sent = errors.InvalidInput("top_k must be between 1 and 100 (0 for 5), not 500.", field="top_k")
    back = from_rpc(Failed.rich(sent), "the gallery", 3.0)
    assert back.field == "top_k" and back.reason == "INVALID_ARGUMENT"
    grpc_details = [
        json_format.MessageToDict(d, preserving_proto_field_name=True)
        for d in rpc_status.from_call(Failed.rich(sent)).details  # type: ignore[arg-type, union-attr]
    ]
    assert (
        body(back)["details"]
        == grpc_details
        == [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "INVALID_ARGUMENT",
                "domain": "facerec",
            },
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "field_violations": [{"field": "top_k", "description": str(sent)}],
            },
        ]
    )


def test_busy_and_unavailable_carry_retry_info_in_the_body_and_retry_after() -> None:
    for error in (errors.Overloaded("Full."), errors.Unavailable("Down.")):
        back = from_rpc(Failed.rich(error), "the gallery", 3.0)
        retry = [d for d in body(back)["details"] if d["@type"].endswith("google.rpc.RetryInfo")]
        assert retry == [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retry_delay": "1s"}]
        assert headers(back)["Retry-After"] == "1"


def test_the_request_id_is_the_gateways_own_else_the_callers_header() -> None:
    header = {"type": "http", "headers": [(b"x-request-id", b"abc-123")]}
    assert request_id_of(header) == "abc-123"
    assert request_id_of({**header, "state": {"request_id": "edge-7"}}) == "edge-7"
    assert request_id_of({"type": "http", "headers": []}) == ""
    assert body(errors.NotFound("No."), "edge-7")["request_id"] == "edge-7"


def test_every_reason_has_a_meaning_and_the_readme_table_is_the_generated_one() -> None:
    assert set(errors.MEANING) == set(errors.Reason)
    text = README.read_text()
    shown = text[
        text.index("<!-- reasons:begin -->\n") + len("<!-- reasons:begin -->\n") : text.index(
            "<!-- reasons:end -->"
        )
    ]
    assert shown == reasons_table(), (
        "README's table of reasons is stale; paste gateway.errors.reasons_table()"
    )
