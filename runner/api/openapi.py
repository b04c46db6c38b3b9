"""The OpenAPI document as the API behaves (`/openapi.json`, `/docs`): FastAPI's, corrected.

- Every error answer is a problem document: `application/problem+json` with the `Problem`
  schema (FastAPI documents its own `HTTPValidationError` as `application/json`).
- Every operation under `/api/v1` documents 422 (validation, text that cannot be stored) and
  503 (the database is unavailable); one that takes a body documents 413.
- An optional parameter is absent or a value, never `null`: FastAPI writes `X | None` as
  `anyOf: [X, null]`, which a client can only send as the text `null`.
- Text a request sends (parameters, body keys and strings, any depth) has the pattern of text
  the runner can store (`runner.api.inputs` refuses the rest): no NUL, no lone surrogate.
- An event stream documents each event: its `data` is the JSON of an `Event`.
- Each operation names its role (`x-dwf-role`); in strict mode it requires the bearer scheme
  (`runner.api.access`), as the server does.

`tests/integration/test_contract.py` holds the API to this document with schemathesis.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI

from runner.api import access, problems

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
#: Text the runner can store: no NUL character. (Nor a lone surrogate, which JSON's `\ud800`
#: escape can make; a pattern cannot say that: JSON Schema strings are Unicode text already.)
STORABLE_TEXT = "^[^\\u0000]*$"
STORABLE_JSON_REF = "#/components/schemas/StorableJson"
STORABLE_JSON = {
    "description": "Any JSON value whose keys and strings hold no NUL character and no lone "
    "surrogate (the runner cannot store them).",
    "anyOf": [
        {"type": "string", "pattern": STORABLE_TEXT},
        {"type": ["number", "boolean", "null"]},
        {"type": "array", "items": {"$ref": STORABLE_JSON_REF}},
        {
            "type": "object",
            "propertyNames": {"pattern": STORABLE_TEXT},
            "additionalProperties": {"$ref": STORABLE_JSON_REF},
        },
    ],
}
SSE_EVENT = {
    "description": "One Server-Sent Event: `id` its eventId, `event` its kind, `data` the entry.",
    "type": "object",
    "required": ["data"],
    "properties": {
        "id": {"type": "string"},
        "event": {"type": "string"},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {"$ref": "#/components/schemas/Event"},
        },
    },
}
#: What an operation may answer whatever it is, and why.
EVERY_OPERATION = {
    "422": "The request does not match the schema (`errors` names each field at fault), or "
    "holds text the runner cannot store (a NUL character, a lone surrogate).",
    "503": "The database is unavailable; retry after `Retry-After` seconds.",
}
WITH_A_BODY = {"413": "The body is over the limit (`DWF_MAX_BODY_BYTES`, default 1 MiB)."}


def install(app: FastAPI, prefix: str) -> None:
    """Serve the corrected document for `app`, whose routes under `prefix` are the API's."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = FastAPI.openapi(app)  # builds FastAPI's and keeps it: corrected in place
            access.document(document, strict=app.state.guard.strict)
            _correct(document, prefix)
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]


def _correct(document: dict[str, Any], prefix: str) -> None:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    if "Problem" not in schemas:
        problem = problems.Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(problem.pop("$defs", {}))
        schemas["Problem"] = problem
    schemas["StorableJson"] = STORABLE_JSON
    storable = _Storable(schemas)
    for path, item in document.get("paths", {}).items():
        for operation in item.values():
            body = operation.get("requestBody", {}).get("content", {})
            for media in body.values():
                storable.apply(media.get("schema", {}))
            stream = operation.get("responses", {}).get("200", {}).get("content", {})
            if "text/event-stream" in stream:
                stream["text/event-stream"] = {"schema": SSE_EVENT}
            responses = operation.setdefault("responses", {})
            extra = dict(EVERY_OPERATION) if path.startswith(prefix) else {}
            if "requestBody" in operation:
                extra |= WITH_A_BODY
            for status, description in extra.items():
                responses.setdefault(status, {"description": description})
            if "422" in responses and responses["422"].get("description") == "Validation Error":
                responses["422"]["description"] = EVERY_OPERATION["422"]
            for status, answer in responses.items():
                if status[0] in "45":
                    answer["content"] = {problems.PROBLEM_JSON: {"schema": PROBLEM_REF}}
            for parameter in operation.get("parameters", []):
                _not_null(parameter.get("schema", {}))
                storable.apply(parameter.get("schema", {}))
    for unused in ("HTTPValidationError", "ValidationError"):
        if f'"#/components/schemas/{unused}"' not in json.dumps(document):
            schemas.pop(unused, None)


def _not_null(schema: dict[str, Any]) -> None:
    """`anyOf: [X, {type: null}]` becomes X, keeping the title, description and default."""
    options = [s for s in schema.get("anyOf", []) if s.get("type") != "null"]
    if "anyOf" in schema and len(options) < len(schema["anyOf"]):
        del schema["anyOf"]
        if len(options) == 1:
            schema.update(options[0])
        else:
            schema["anyOf"] = options
    if schema.get("default", "") is None:
        del schema["default"]


class _Storable:
    """Gives the strings and free-form values of request schemas the storable-text pattern."""

    def __init__(self, components: dict[str, Any]) -> None:
        self.components = components
        self.done: set[str] = set()

    def apply(self, schema: Any) -> None:
        if not isinstance(schema, dict):
            return
        ref = schema.get("$ref", "")
        if ref.startswith("#/components/schemas/"):
            name = ref.rsplit("/", 1)[1]
            if name not in self.done:
                self.done.add(name)
                self.apply(self.components.get(name))
            return
        kind = schema.get("type")
        if not schema.keys() - {"title", "description", "default", "examples"}:
            schema["$ref"] = STORABLE_JSON_REF  # any JSON value
        elif kind == "string" and not schema.keys() & {"pattern", "format", "enum", "const"}:
            schema["pattern"] = STORABLE_TEXT
        elif kind == "object":
            extra = schema.get("additionalProperties", not schema.get("properties"))
            if extra is True:
                schema["additionalProperties"] = {"$ref": STORABLE_JSON_REF}
            if extra is not False:
                schema.setdefault("propertyNames", {"pattern": STORABLE_TEXT})
        for key in ("properties", "$defs"):
            for child in (schema.get(key) or {}).values():
                self.apply(child)
        for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
            for child in schema.get(key) or []:
                self.apply(child)
        for key in ("items", "additionalProperties", "not"):
            self.apply(schema.get(key))
