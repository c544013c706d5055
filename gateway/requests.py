"""Reading a route's input: multipart form fields and files, or a JSON body with pictures in base64.

Every mistake is a facerec error with one sentence (400, or 413 for a picture over the limit). A large
JSON body is parsed in a worker thread, so the event loop (and /healthz) goes on answering meanwhile.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio.to_thread
from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request

from facerec.errors import Reason
from gateway.errors import invalid, too_large

Model = TypeVar("Model", bound=BaseModel)
JSON = "application/json"
MULTIPART = "multipart/form-data"
IMAGE = Reason.IMAGE_TOO_LARGE


@dataclass(frozen=True)
class Picture:
    """One picture of a request: its bytes and a name to report it by (the file name, or its position)."""

    name: str
    data: bytes


def kind(request: Request) -> str:
    """JSON or MULTIPART; anything else is refused."""
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type in (JSON, MULTIPART):
        return content_type
    raise invalid(
        "Send pictures as multipart/form-data files or as a JSON body with base64 strings "
        f"(Content-Type {content_type or 'missing'})."
    )


async def form(request: Request, max_files: int) -> FormData:
    """The multipart form; starlette spools large files to disk, and refuses more than max_files."""
    return await request.form(max_files=max_files, max_fields=32)


# Items (commas and brackets) a JSON request may hold: 256 embeddings of 2048 numbers and some. Counted on
# the raw bytes before parsing, a body of millions of tiny numbers never becomes millions of objects.
MAX_JSON_ITEMS = 256 * 2048 + 4096
# Bodies larger than this are parsed in a worker thread: the event loop goes on serving meanwhile.
PARSE_OFF_LOOP_BYTES = 256 * 1024


async def json_body(request: Request, model: type[Model]) -> Model:
    """The body parsed as `model`; a mistake is one sentence naming the field."""
    raw = bytearray()
    # gateway.guard.BodyLimit has bounded the size and the time of this stream.
    async for chunk in request.stream():
        raw += chunk
    if raw.count(b",") + raw.count(b"[") > MAX_JSON_ITEMS:
        raise invalid(f"The JSON body holds more than {MAX_JSON_ITEMS} items.")
    holder = [raw]
    del raw  # the parser takes the only reference and drops the bytes once they are text
    if len(holder[0]) > PARSE_OFF_LOOP_BYTES:
        return await anyio.to_thread.run_sync(_parse, holder, model)
    return _parse(holder, model)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _parse(holder: list[bytearray], model: type[Model]) -> Model:
    """holder's one body as `model`. The raw bytes, then the text, are dropped as soon as the next form
    exists, so the peak is about twice the body, not three or four times."""
    try:
        text = holder.pop().decode("utf-8")
        value = json.loads(text, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        first = str(exc).split("\n", 1)[0][:200].rstrip(".")
        raise invalid(f"The body is not valid JSON: {first}.") from None
    del text
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise invalid(validation_sentence(exc.errors()), validation_field(exc.errors())) from None


def validation_field(errors: list[Any]) -> str:
    """The field of pydantic's or FastAPI's first validation error, as the request names it ("top_k",
    "embeddings[2]"); "" for the body as a whole."""
    if not errors:
        return ""
    where = ""
    for part in errors[0].get("loc", ()):
        if part in ("body", "query", "path"):
            continue
        where += f"[{part}]" if isinstance(part, int) else f".{part}" if where else str(part)
    return where


def validation_sentence(errors: list[Any]) -> str:
    """pydantic's or FastAPI's first validation error as one sentence."""
    if not errors:
        return "The request is not valid."
    first = errors[0]
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    message = str(first.get("msg", "is not valid")).rstrip(".")
    return f"{where or 'The body'}: {message}." if where else f"The body is not valid: {message}."


async def file(value: object, field: str, max_bytes: int) -> Picture:
    """An uploaded file's bytes, refused (413) over max_bytes before it is read."""
    if not isinstance(value, UploadFile):
        raise invalid(f"The field {field} must be a file.", field)
    name = value.filename or field
    if value.size is not None and value.size > max_bytes:
        raise too_large(f"The picture {name} is larger than {max_bytes} bytes.", IMAGE, field)
    return Picture(name, await value.read())


async def files(form_data: FormData, field: str, max_bytes: int, required: bool = True) -> list[Picture]:
    values = form_data.getlist(field)
    if required and not values:
        raise invalid(f"Give the picture as the multipart file field {field}.", field)
    return [await file(value, field, max_bytes) for value in values]


def decoded(text: str, field: str, max_bytes: int) -> Picture:
    """A base64 picture (a data: URL prefix is accepted), refused (413) over max_bytes."""
    payload = text.split(",", 1)[1] if text.startswith("data:") else text
    # base64 holds 3 bytes per 4 characters: refuse a picture over the limit before decoding it.
    if len(payload) // 4 * 3 > max_bytes + 3:
        raise too_large(f"The picture {field} is larger than {max_bytes} bytes.", IMAGE, field)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise invalid(f"The field {field} is not valid base64.", field) from None
    if len(data) > max_bytes:
        raise too_large(f"The picture {field} is larger than {max_bytes} bytes.", IMAGE, field)
    return Picture(field, data)


def number(
    form_data: FormData,
    field: str,
    kind_: type[int] | type[float],
    default: int | float,
    low: float = 0,
    high: float = 2**31 - 1,
) -> Any:
    """A numeric form field within [low, high], or default when absent or empty."""
    value = form_data.get(field)
    if value is None or value == "":
        return default
    if not isinstance(value, str):
        raise invalid(f"The field {field} must be a number, not a file.", field)
    try:
        number_ = kind_(value)
    except ValueError:
        raise invalid(f"The field {field} must be a number, not {value[:40]!r}.", field) from None
    if not low <= number_ <= high:  # also refuses nan
        raise invalid(f"The field {field} must be between {low:g} and {high:g}, not {value[:40]}.", field)
    return number_


def text(form_data: FormData, field: str) -> str:
    value = form_data.get(field, "")
    if not isinstance(value, str):
        raise invalid(f"The field {field} must be text, not a file.", field)
    return value


def require(condition: bool, message: str) -> None:
    if not condition:
        raise invalid(message)
