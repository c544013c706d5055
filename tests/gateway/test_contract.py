"""The HTTP answers come from the contract: every field of every response message (and of the messages
inside it) is in the OpenAPI schema of its route and in the JSON the gateway writes."""

from __future__ import annotations

from typing import Any

import pytest

from facerec.v1 import common_pb2, detector_pb2, gallery_pb2
from gateway.app import build_app
from gateway.config import Settings
from gateway.contract import OVERRIDES, json_name, model_of, to_json

# Every /v1 route's answer, by the message it stands for.
ROUTES: dict[tuple[str, str], Any] = {
    ("POST", "/v1/identify"): gallery_pb2.IdentifyResponse,
    ("POST", "/v1/verify"): gallery_pb2.VerifyResponse,
    ("POST", "/v1/detect"): detector_pb2.DetectResponse,
    ("POST", "/v1/enroll"): gallery_pb2.EnrollResponse,
    ("POST", "/v1/search"): gallery_pb2.SearchResponse,
    ("POST", "/v1/represent"): gallery_pb2.RepresentResponse,
    ("GET", "/v1/identities"): gallery_pb2.ListIdentitiesResponse,
    ("GET", "/v1/identities/{identity}"): gallery_pb2.GetIdentityResponse,
    ("DELETE", "/v1/identities/{identity}"): gallery_pb2.RemoveIdentityResponse,
    ("DELETE", "/v1/faces/{face_id}"): gallery_pb2.RemoveFaceResponse,
    ("POST", "/v1/train"): gallery_pb2.TrainResponse,
    ("GET", "/v1/stats"): gallery_pb2.StatsResponse,
    ("POST", "/v1/identities/{identity}:rename"): gallery_pb2.RenameIdentityResponse,
}
# Every gallery route also answers under a collection, as it does on the default one.
ROUTES |= {
    (method, path.replace("/v1/", "/v1/collections/{collection}/", 1)): message
    for (method, path), message in ROUTES.items()
    if path != "/v1/detect"
}
ROUTES |= {
    ("GET", "/v1/collections"): gallery_pb2.ListCollectionsResponse,
    ("POST", "/v1/collections"): gallery_pb2.Collection,
    ("GET", "/v1/collections/{collection}"): gallery_pb2.Collection,
    ("DELETE", "/v1/collections/{collection}"): gallery_pb2.DeleteCollectionResponse,
    ("POST", "/v1/collections/{collection}:reembed"): gallery_pb2.Operation,
    ("POST", "/v1/collections/{collection}/operating-points"): gallery_pb2.Collection,
    ("GET", "/v1/operations/{operation_id}"): gallery_pb2.Operation,
}
# Routes that answer an image (FacePicture's bytes with its media type), not JSON.
IMAGES = {
    ("GET", "/v1/faces/{face_id}/picture"),
    ("GET", "/v1/collections/{collection}/faces/{face_id}/picture"),
}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return build_app(Settings()).openapi()


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """A schema with its $ref (and a nullable anyOf's $ref) followed."""
    if "$ref" in schema:
        return resolve(spec, spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]])
    for option in schema.get("anyOf", []):
        if option.get("type") != "null":
            return resolve(spec, option)
    if schema.get("type") == "array":
        return resolve(spec, schema["items"])
    return schema


def missing_fields(spec: dict[str, Any], descriptor: Any, schema: dict[str, Any], where: str) -> list[str]:
    """Every field of descriptor (and of its message fields, recursively) absent from schema."""
    if descriptor.full_name in OVERRIDES:
        return []
    properties = resolve(spec, schema).get("properties", {})
    missing = []
    for field in descriptor.fields:
        name = json_name(descriptor, field)
        if name not in properties:
            missing.append(f"{where}.{name}")
        elif field.message_type is not None:
            missing += missing_fields(spec, field.message_type, properties[name], f"{where}.{name}")
    return missing


def test_the_table_covers_every_v1_route(spec: dict[str, Any]) -> None:
    routes = {
        (method.upper(), path)
        for path, item in spec["paths"].items()
        if path.startswith("/v1/")
        for method in item
    }
    assert routes == set(ROUTES) | IMAGES


@pytest.mark.parametrize(("route", "message"), list(ROUTES.items()), ids=lambda v: str(v))
def test_every_field_of_the_answer_message_is_in_its_routes_schema(
    spec: dict[str, Any], route: tuple[str, str], message: Any
) -> None:
    method, path = route
    answer = spec["paths"][path][method.lower()]["responses"]["200"]["content"]["application/json"]["schema"]
    assert missing_fields(spec, message.DESCRIPTOR, answer, path) == []


def test_the_fields_the_issue_named_are_there(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    assert {"not_identifiable", "not_identifiable_reason"} <= set(schemas["IdentifiedFace"]["properties"])
    assert "classifier_stale" in schemas["IdentifyResponse"]["properties"]
    assert {"faces_a", "faces_b"} <= set(schemas["VerifyResponse"]["properties"])
    assert "identification_point" in schemas["StatsResponse"]["properties"]


def filled(message: Any) -> Any:
    """The message with every scalar, enum and message field set (one element in repeated fields)."""
    for field in message.DESCRIPTOR.fields:
        if field.message_type is not None:
            if field.message_type.full_name == common_pb2.Error.DESCRIPTOR.full_name:
                target = getattr(message, field.name)
                child = target.add() if field.is_repeated else target
                child.code, child.message, child.reason = 8, "Too big.", "IMAGE_TOO_LARGE"
                continue
            target = getattr(message, field.name)
            filled(target.add() if field.is_repeated else target)
        elif field.enum_type is not None:
            value = field.enum_type.values[-1].number
            getattr(message, field.name).append(value) if field.is_repeated else setattr(
                message, field.name, value
            )
        else:
            value = {9: "x", 12: b"x", 8: True}.get(field.type, 1)
            getattr(message, field.name).append(value) if field.is_repeated else setattr(
                message, field.name, value
            )
    return message


@pytest.mark.parametrize("message", sorted(set(ROUTES.values()), key=lambda m: m.DESCRIPTOR.name))
def test_the_json_of_a_filled_message_validates_against_its_model_and_keeps_every_field(message: Any) -> None:
    proto = filled(message())
    extra = {"filename": "x"} if message is gallery_pb2.EnrollResult else {}
    json = to_json(proto, **extra)
    model = model_of(message.DESCRIPTOR).model_validate(json)
    dumped = model.model_dump(mode="json")
    assert set(dumped) == {json_name(message.DESCRIPTOR, f) for f in message.DESCRIPTOR.fields}
    assert all(value not in (None, [], "") for value in dumped.values()), dumped
