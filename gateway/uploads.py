"""Enroll's pictures at the gateway: uploads and base64 strings checked against their limits one by one (a
refused picture becomes its own INVALID result, the others are still enrolled), and cut into calls of at
most the gallery's message size."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import UploadFile

from facerec.errors import FacerecError
from facerec.v1 import gallery_pb2
from gateway.contract import to_json
from gateway.errors import body as error_body
from gateway.errors import invalid, too_large
from gateway.requests import IMAGE, Picture, decoded


def check_count(count: int, limit: int) -> None:
    if count > limit:
        raise invalid(f"At most {limit} pictures per enroll, not {count}.", "images")


def enroll_upload(upload: object, index: int, max_bytes: int) -> UploadFile | dict[str, Any]:
    """The upload to send (still unread), or its INVALID outcome when it is not a file or over the limit
    (the others are still enrolled)."""
    name = getattr(upload, "filename", None) or f"images[{index}]"
    if not isinstance(upload, UploadFile):
        return refused(invalid(f"The field images[{index}] must be a file.", f"images[{index}]"), name)
    if upload.size is not None and upload.size > max_bytes:
        return refused(
            too_large(f"The picture {name} is larger than {max_bytes} bytes.", IMAGE, f"images[{index}]"),
            name,
        )
    return upload


def size(picture: Picture | UploadFile) -> int:
    return len(picture.data) if isinstance(picture, Picture) else picture.size or 0


def parts(
    pictures: list[tuple[int, Picture | UploadFile]], limit: int
) -> list[list[tuple[int, Picture | UploadFile]]]:
    """Consecutive pictures in parts of at most `limit` bytes, each with one picture at least."""
    parts: list[list[tuple[int, Picture | UploadFile]]] = []
    held = 0
    for item in pictures:
        if not parts or held + size(item[1]) > limit:
            parts.append([])
            held = 0
        parts[-1].append(item)
        held += size(item[1])
    return parts


async def picture_bytes(picture: Picture | UploadFile) -> bytes:
    return picture.data if isinstance(picture, Picture) else await picture.read()


def picture_name(picture: Picture | UploadFile, index: int) -> str:
    return picture.name if isinstance(picture, Picture) else picture.filename or f"images[{index}]"


def enroll_base64(text_: str, index: int, max_bytes: int) -> Picture | dict[str, Any]:
    try:
        return decoded(text_, f"images[{index}]", max_bytes)
    except FacerecError as exc:
        return refused(exc, f"images[{index}]")


def refused(exc: FacerecError, name: str) -> dict[str, Any]:
    """An EnrollResult (JSON) for a picture the gateway refused itself."""
    result = to_json(gallery_pb2.EnrollResult(outcome=gallery_pb2.INVALID), filename=name)
    result["error"] = {key: error_body(exc)[key] for key in ("code", "message", "reason")} | {
        "field": exc.field
    }
    return result
