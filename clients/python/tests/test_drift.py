"""The SDK against the running provider's /openapi.json, so the two cannot drift silently.

- every operationId in ``wsp.ROUTES`` (the table every request is built from) exists with the
  method and path the SDK uses;
- every field of each modelled dataclass is a property of its response schema
  (``wsp.models.RESPONSE_SCHEMAS``), and a field the SDK treats as always present is required there.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Tuple

import pytest

import wsp
from wsp.models import RESPONSE_SCHEMAS, json_name


@pytest.fixture(scope="module")
def doc(client: wsp.Client) -> Dict[str, Any]:
    """The provider's OpenAPI document."""
    document = client.openapi()
    assert str(document.get("openapi", "")).startswith("3.")
    return document


def _operations(doc: Dict[str, Any]) -> Dict[str, Tuple[str, str, Dict[str, Any]]]:
    found = {}
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            if isinstance(op, dict) and "operationId" in op:
                found[op["operationId"]] = (method.upper(), path, op)
    return found


def _resolve(doc: Dict[str, Any], schema: Dict[str, Any]) -> Dict[str, Any]:
    """Follow $ref, and pick the object variant of a nullable anyOf/oneOf."""
    while True:
        if "$ref" in schema:
            node: Any = doc
            for part in schema["$ref"].lstrip("#/").split("/"):
                node = node[part]
            schema = node
            continue
        variants = schema.get("anyOf") or schema.get("oneOf")
        if variants:
            objects = [v for v in variants if _resolve(doc, v).get("type") != "null"]
            if len(objects) == 1:
                schema = objects[0]
                continue
        return schema


def _schema_at(doc: Dict[str, Any], op: Dict[str, Any], status: str, path: Tuple[str, ...]) -> Dict[str, Any]:
    response = _resolve(doc, op["responses"][status])
    schema = _resolve(doc, response["content"]["application/json"]["schema"])
    for step in path:
        schema = _resolve(doc, schema["items"] if step == "[]" else schema["properties"][step])
    return schema


def test_routes_exist_with_method_and_path(doc: Dict[str, Any]) -> None:
    """Each operationId the SDK calls is in /openapi.json with the same method and path."""
    ops = _operations(doc)
    problems: List[str] = []
    for operation_id, (method, path) in wsp.ROUTES.items():
        if operation_id not in ops:
            problems.append(f"{operation_id}: not in /openapi.json")
            continue
        their_method, their_path, _ = ops[operation_id]
        if (their_method, their_path) != (method, path):
            problems.append(f"{operation_id}: SDK {method} {path}, API {their_method} {their_path}")
    assert not problems, "\n".join(problems)


def test_every_client_method_uses_a_listed_route() -> None:
    """The clients reach the API only through ROUTES (no hand-written paths)."""
    import inspect

    import wsp.client

    source = inspect.getsource(wsp.client)
    assert "/workspaces" not in source and "/snapshots" not in source


def test_uncovered_routes_are_known(doc: Dict[str, Any]) -> None:
    """Routes the SDK leaves out are the streaming ones (SSE, WebSocket), on purpose."""
    left_out = set(_operations(doc)) - set(wsp.ROUTES)
    assert left_out <= {"watchWorkspace", "watchCommand", "watchOperation", "attachCommand"}, left_out


@pytest.mark.parametrize("cls", list(RESPONSE_SCHEMAS), ids=lambda c: c.__name__)
def test_dataclass_fields_exist_in_response_schema(doc: Dict[str, Any], cls: type) -> None:
    """Fields ⊆ the schema's properties; fields without a default ⊆ its required properties."""
    operation_id, status, path = RESPONSE_SCHEMAS[cls]
    ops = _operations(doc)
    assert operation_id in ops, f"{cls.__name__}: {operation_id} not in /openapi.json"
    schema = _schema_at(doc, ops[operation_id][2], status, path)
    properties = set(schema.get("properties", {}))
    required = set(schema.get("required", []))
    missing: List[str] = []
    not_required: List[str] = []
    for f in dataclasses.fields(cls):
        if f.metadata.get("raw"):
            continue
        name = json_name(f)
        if name not in properties:
            missing.append(name)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and name not in required:
            not_required.append(name)
    assert not missing, f"{cls.__name__}: not in the {operation_id} {status} schema: {missing}"
    assert not not_required, f"{cls.__name__}: modelled as always present but optional in the API: {not_required}"
