"""The gateway's OpenAPI document is one to generate clients from: tags, operation ids that are the RPC
names, every property and parameter described (from the protos' comments), the errors it really answers
(400, never FastAPI's 422) with their body and Retry-After, examples; and a TypeScript client generated
from /openapi.json by openapi-typescript type-checks (tsc --noEmit) a program that uses it with
openapi-fetch."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from facerec.protodoc import comments
from facerec.v1 import gallery_pb2
from gateway import models
from gateway.app import build_app
from gateway.config import Settings

TOOLS = Path(__file__).parent / "openapi_ts"
NODE_MODULES = TOOLS / "node_modules"
GALLERY = {m.name for m in gallery_pb2.DESCRIPTOR.services_by_name["Gallery"].methods}
# The collections' own RPCs name the collection themselves; every other gallery RPC is served twice: on
# the default collection and, operation id suffixed, under /v1/collections/{collection}.
OF_COLLECTIONS = {
    "CreateCollection",
    "GetCollection",
    "ListCollections",
    "DeleteCollection",
    "SetOperatingPoints",
    "Reembed",
    "GetOperation",
}
RPCS = {
    *GALLERY,
    *(f"{rpc}InCollection" for rpc in GALLERY - OF_COLLECTIONS),
    "Detect",
    "Healthz",
    "Readyz",
}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    """/openapi.json as the gateway serves it (through its middleware, in process)."""

    async def fetch() -> dict[str, Any]:
        transport = httpx.ASGITransport(app=build_app(Settings()))
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            answer = await client.get("/openapi.json")
            assert answer.status_code == 200
            found: dict[str, Any] = answer.json()
            return found

    return anyio.run(fetch)


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, op) for path, ops in document["paths"].items() for method, op in ops.items()]


def test_every_operation_is_tagged_and_named_after_its_rpc(document: dict[str, Any]) -> None:
    tags = {t["name"] for t in document["tags"]}
    assert {op["operationId"] for _, _, op in operations(document)} == RPCS
    for method, path, op in operations(document):
        assert op["tags"] and set(op["tags"]) <= tags, (method, path)
        assert op.get("description") or op.get("summary"), (method, path)
    identify = document["paths"]["/v1/identify"]["post"]
    assert identify["description"].startswith(comments()["facerec.v1.Gallery.Identify"])
    scoped = document["paths"]["/v1/collections/{collection}/identify"]["post"]
    assert scoped["description"] == identify["description"] and scoped["tags"] == identify["tags"]
    collection = next(p for p in scoped["parameters"] if p["name"] == "collection")
    assert collection["in"] == "path" and collection["schema"]["maxLength"] == 128


def test_every_property_and_parameter_is_described_from_the_protos(document: dict[str, Any]) -> None:
    missing = []
    bodies = [
        (f"{m} {p} {kind}", content["schema"])
        for m, p, op in operations(document)
        for kind, content in op.get("requestBody", {}).get("content", {}).items()
    ]
    for where, schema in [*document["components"]["schemas"].items(), *bodies]:
        missing += [
            f"{where}.{n}" for n, prop in schema.get("properties", {}).items() if not prop.get("description")
        ]
    for m, p, op in operations(document):
        missing += [f"{m} {p} ?{q['name']}" for q in op.get("parameters", []) if not q.get("description")]
    assert not missing
    schemas = document["components"]["schemas"]
    # The proto's comment, word for word; an enum lists what each value means.
    assert schemas["Box"]["properties"]["x"]["description"] == comments()["facerec.v1.Box.x"]
    assert (
        "FACE_TOO_SMALL: Its box's shorter side"
        in schemas["IdentifiedFace"]["properties"]["not_identifiable"]["description"]
    )
    assert schemas["IdentifyResponse"]["description"] == comments()["facerec.v1.IdentifyResponse"]


def test_the_errors_are_the_ones_the_gateway_answers_with_their_body_and_examples(
    document: dict[str, Any],
) -> None:
    text = json.dumps(document)
    assert '"422"' not in text and "HTTPValidationError" not in text
    body = document["components"]["schemas"]["ErrorBody"]
    assert set(body["properties"]) == {"code", "message", "reason", "details", "request_id"}
    for method, path, op in operations(document):
        if not path.startswith("/v1/"):
            continue
        responses = op["responses"]
        assert {"400", "401", "403", "404", "408", "413", "429", "503"} <= set(responses), (method, path)
        for status in ("400", "413", "429", "503"):
            content = responses[status]["content"]["application/json"]
            assert content["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
            assert content["example"]["code"] and content["example"]["details"][0]["domain"] == "facerec"
        assert "Retry-After" in responses["429"]["headers"] and "Retry-After" in responses["503"]["headers"]
        assert "Retry-After" not in responses["413"].get("headers", {})
    # Answers carry examples that are valid answers (the models the routes answer with accept them).
    for path, model in (
        ("/v1/identify", models.IdentifyResponse),
        ("/v1/verify", models.VerifyResponse),
        ("/v1/represent", models.RepresentResponse),
    ):
        example = document["paths"][path]["post"]["responses"]["200"]["content"]["application/json"][
            "example"
        ]
        assert model.model_validate(example).model_dump(mode="json").keys() == example.keys(), path
    # Request bodies carry examples, JSON and multipart alike are described.
    identify = document["paths"]["/v1/identify"]["post"]["requestBody"]["content"]
    assert identify["application/json"]["schema"]["examples"][0]["top_k"] == 3
    assert identify["multipart/form-data"]["schema"]["properties"]["image"]["format"] == "binary"


def tsc(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(NODE_MODULES / ".bin" / "tsc"), "--noEmit", "-p", str(folder)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_typescript_client_generated_from_it_type_checks_a_program(
    document: dict[str, Any], tmp_path: Path
) -> None:
    assert NODE_MODULES.is_dir(), "run `make openapi-ts` (part of `make test`) to install the generator"
    (tmp_path / "openapi.json").write_text(json.dumps(document))
    generated = subprocess.run(
        [
            str(NODE_MODULES / ".bin" / "openapi-typescript"),
            str(tmp_path / "openapi.json"),
            "-o",
            str(tmp_path / "schema.d.ts"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert generated.returncode == 0, generated.stderr
    for name in ("client.ts", "tsconfig.json"):
        shutil.copy(TOOLS / name, tmp_path / name)
    (tmp_path / "node_modules").symlink_to(NODE_MODULES)
    checked = tsc(tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # The check has teeth: the same program sending a number for a picture does not type-check.
    program = (
        (TOOLS / "client.ts")
        .read_text()
        .replace("body: { image: picture, top_k: 3 }", "body: { image: 7, top_k: 3 }")
    )
    (tmp_path / "client.ts").write_text(program)
    wrong = tsc(tmp_path)
    assert wrong.returncode != 0 and "client.ts" in wrong.stdout, wrong.stdout
