"""The HTTP answers, generated from the contract: a pydantic model per proto message and the
message → JSON translation, both walked from the same descriptors, so a field added to a proto is in the
gateway's JSON and its OpenAPI schema without a line written here.

JSON names are the proto field names (snake_case). Where the HTTP face differs from a message on
purpose it says so below (SHAPES): a field's JSON name, or a field the gateway adds. int64 fields are
JSON numbers (not the strings of the canonical proto JSON mapping): face ids stay below 2^53, where a
JavaScript double is exact. float fields are written with the fewest digits that read back as the same
float32. Enums are their value names. An unset message field is null.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import grpc
import numpy as np

# Descriptors are typed Any: the C (upb) and Python descriptor classes are two types to mypy.
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from pydantic import BaseModel, Field, PlainSerializer, create_model

from facerec.protodoc import comments
from facerec.v1 import common_pb2


def _shortest(value: float) -> float:
    # The services' numbers are float32: written as doubles they would read 1.059999942779541 for 1.06.
    return float(str(np.float32(value)))


# A float32 of a proto message, written with the fewest digits that read back as the same float32.
F32 = Annotated[float, PlainSerializer(_shortest, return_type=float)]


class ItemError(BaseModel):
    """A per-item error inside an otherwise successful answer (one picture of several): the gRPC status
    code's name, one sentence, the stable reason (README: the table of reasons) and the item's field."""

    code: str = Field(description="The gRPC status code's name.", examples=["INVALID_ARGUMENT"])
    message: str = Field(
        description="One sentence, safe to show.", examples=["The image is empty (0 bytes)."]
    )
    reason: str = Field(description=comments()["facerec.v1.Error.reason"], examples=["INVALID_ARGUMENT"])
    field: str = Field(description=comments()["facerec.v1.Error.field"], examples=["images[2]"])


class ErrorBody(BaseModel):
    """Every error answer: the gRPC status code's name, one sentence, the stable reason, the google.rpc
    details a gRPC caller gets, and the request's id."""

    code: str = Field(description="The gRPC status code's name.", examples=["INVALID_ARGUMENT"])
    message: str = Field(
        description="One sentence, safe to show.",
        examples=["top_k must be between 1 and 100 (0 for 5), not 500."],
    )
    reason: str = Field(
        description="The stable machine-readable reason (README: reasons).", examples=["INVALID_ARGUMENT"]
    )
    details: list[dict[str, Any]] = Field(
        description=(
            'google.rpc details as proto JSON, each with its @type: ErrorInfo (reason, domain "facerec"), '
            "BadRequest (field_violations: the request field at fault) and RetryInfo (retry_delay) where "
            "retrying later helps; the same details the gRPC status carries."
        ),
        examples=[
            [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "INVALID_ARGUMENT",
                    "domain": "facerec",
                },
                {
                    "@type": "type.googleapis.com/google.rpc.BadRequest",
                    "field_violations": [
                        {"field": "top_k", "description": "top_k must be between 1 and 100."}
                    ],
                },
            ]
        ],
    )
    request_id: str = Field(
        description="The id this request is logged under (x-request-id); empty when it has none.",
        examples=["5f0c6c1e9a7b4d2e"],
    )


@dataclass(frozen=True)
class Shape:
    """How the HTTP face of one message differs from the message: renamed fields, added fields."""

    renames: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


SHAPES: dict[str, Shape] = {
    # The HTTP API named the detector's per-picture results `images` before it was generated.
    "facerec.v1.DetectResponse": Shape(renames={"results": "images"}),
    "facerec.v1.EnrollResult": Shape(
        extra={"filename": (str, Field("", description="The picture's file name (multipart), or its index."))}
    ),
}
# Messages answered in a shape of the gateway's own: facerec.v1.Error's code number becomes its name.
OVERRIDES: dict[str, type[BaseModel]] = {common_pb2.Error.DESCRIPTOR.full_name: ItemError}

_SCALARS: dict[int, Any] = {
    FieldDescriptor.TYPE_DOUBLE: float,
    FieldDescriptor.TYPE_FLOAT: F32,
    FieldDescriptor.TYPE_BOOL: bool,
    FieldDescriptor.TYPE_STRING: str,
    FieldDescriptor.TYPE_BYTES: str,  # base64
}
_models: dict[str, type[BaseModel]] = {}


def json_name(descriptor: Any, proto_field: Any) -> str:
    """The JSON name of a message's field."""
    name: str = proto_field.name
    return SHAPES.get(descriptor.full_name, Shape()).renames.get(name, name)


def model_of(descriptor: Any) -> type[BaseModel]:
    """The pydantic model of a message (built once), every field of it included and described by its
    comment in protos/ (facerec.protodoc)."""
    name = descriptor.full_name
    if name in OVERRIDES:
        return OVERRIDES[name]
    if name not in _models:
        fields: dict[str, Any] = {}
        for f in descriptor.fields:
            kind = _type_of(f)
            about = describe(f)
            if f.is_repeated:
                fields[json_name(descriptor, f)] = (list[kind], Field(description=about))  # type: ignore[valid-type]
            elif f.type == FieldDescriptor.TYPE_MESSAGE:
                fields[json_name(descriptor, f)] = (kind | None, Field(None, description=about))
            else:
                fields[json_name(descriptor, f)] = (kind, Field(description=about))
        fields.update(SHAPES.get(name, Shape()).extra)
        doc = comments().get(name) or f"The {name} message."
        _models[name] = create_model(descriptor.name, __doc__=doc, **fields)
    return _models[name]


def describe(f: Any) -> str:
    """A field's comment in protos/; for an enum, followed by each value's."""
    text = comments().get(f.full_name, "")
    if f.type == FieldDescriptor.TYPE_ENUM:
        enum = f.enum_type
        values = [f"{v.name}: {comments().get(f'{enum.full_name}.{v.name}', '')}" for v in enum.values]
        text = " ".join([text, *values]).strip()
    return text


def doc(name: str) -> str:
    """The comment of a field or message of facerec.v1 ("IdentifyRequest.top_k"), for the gateway's own
    request models, so they say what the gRPC messages say."""
    return comments()[f"facerec.v1.{name}"]


def _type_of(f: Any) -> Any:
    if f.type == FieldDescriptor.TYPE_MESSAGE:
        return model_of(f.message_type)
    if f.type == FieldDescriptor.TYPE_ENUM:
        return Literal[tuple(v.name for v in f.enum_type.values)]
    return _SCALARS.get(f.type, int)


def to_json(message: Message, **extra: Any) -> dict[str, Any]:
    """The message as its model's JSON (see the module's rules), with the gateway's extra fields."""
    descriptor: Any = message.DESCRIPTOR
    if descriptor.full_name in OVERRIDES:
        overridden: dict[str, Any] = _override(message)
        return overridden
    out: dict[str, Any] = {}
    for f in descriptor.fields:
        value = getattr(message, f.name)
        if f.is_repeated:
            out[json_name(descriptor, f)] = [_value(f, v) for v in value]
        elif f.type == FieldDescriptor.TYPE_MESSAGE and not message.HasField(f.name):
            out[json_name(descriptor, f)] = None
        else:
            out[json_name(descriptor, f)] = _value(f, value)
    out.update(extra)
    return out


def _value(f: Any, value: Any) -> Any:
    if f.type == FieldDescriptor.TYPE_MESSAGE:
        return to_json(value)
    if f.type == FieldDescriptor.TYPE_ENUM:
        return f.enum_type.values_by_number[value].name
    if f.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode("ascii")
    return value


def _override(message: Message) -> Any:
    if isinstance(message, common_pb2.Error):
        if message.code == 0:
            return None
        name = next((c.name for c in grpc.StatusCode if c.value[0] == message.code), "UNKNOWN")
        return {"code": name, "message": message.message, "reason": message.reason, "field": message.field}
    raise TypeError(f"no override for {message.DESCRIPTOR.full_name}")


def answer(message: Message, **extra: Any) -> BaseModel:
    """The model instance of a message (what a route returns)."""
    return model_of(message.DESCRIPTOR).model_validate(to_json(message, **extra))
