"""Check each request against GitHub's OpenAPI description (the committed extract).

Path and query parameters are coerced from text by their schema type, then validated; JSON
bodies are validated against the request-body schema. Problems are returned as text, one per
problem, for the double to record as violations.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Final

from jsonschema import Draft7Validator  # type: ignore[import-untyped]

EXTRACT: Final = Path(__file__).with_name("openapi") / "operations.json"


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    docs_url: str | None
    parameters: tuple[dict[str, Any], ...]
    request_body: dict[str, Any] | None
    success_status: int
    example: Any

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"


@cache
def load_operations(path: Path = EXTRACT) -> dict[str, Operation]:
    """Return the extract's operations keyed by "METHOD /path/{template}"."""
    data = json.loads(path.read_text(encoding="utf-8"))
    operations = {}
    for key, raw in data["operations"].items():
        method, template = key.split(" ", 1)
        operations[key] = Operation(
            method=method,
            path=template,
            operation_id=raw["operation_id"],
            docs_url=raw["docs_url"],
            parameters=tuple(raw["parameters"]),
            request_body=raw["request_body"],
            success_status=raw["success_status"],
            example=raw["example"],
        )
    return operations


def source() -> dict[str, Any]:
    """Return where the extract came from (package, version, file, sha256)."""
    data: dict[str, Any] = json.loads(EXTRACT.read_text(encoding="utf-8"))["source"]
    return data


def _coerce(value: str, schema: Mapping[str, Any]) -> Any:
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind]
    if "integer" in kinds:
        try:
            return int(value)
        except ValueError:
            return value
    if "number" in kinds:
        try:
            return float(value)
        except ValueError:
            return value
    if "boolean" in kinds and value in ("true", "false"):
        return value == "true"
    return value


def _schema_problems(value: Any, schema: Mapping[str, Any], where: str) -> list[str]:
    problems = []
    for error in Draft7Validator(schema).iter_errors(value):
        location = "/".join(str(p) for p in error.absolute_path)
        at = f"{where}/{location}" if location else where
        problems.append(f"{at}: {error.message}")
    return problems


NO_BODY: Final = object()


def validate(
    operation: Operation,
    *,
    path_params: Mapping[str, str],
    query: Mapping[str, str],
    body: Any = NO_BODY,
) -> list[str]:
    """Return what is wrong with a request for `operation` (empty: nothing)."""
    problems: list[str] = []
    declared = {(p["in"], p["name"]): p for p in operation.parameters}
    for (place, name), param in declared.items():
        if place == "path":
            if name not in path_params:
                problems.append(f"path parameter {name!r} missing")
                continue
            value = _coerce(path_params[name], param["schema"])
            problems += _schema_problems(value, param["schema"], f"path {name}")
        elif place == "query":
            if name in query:
                value = _coerce(query[name], param["schema"])
                problems += _schema_problems(value, param["schema"], f"query {name}")
            elif param["required"]:
                problems.append(f"required query parameter {name!r} missing")
    for name in query:
        if ("query", name) not in declared:
            problems.append(f"query parameter {name!r} is not in the description")
    spec = operation.request_body
    if spec is None:
        if body is not NO_BODY:
            problems.append("a request body was sent, but the operation takes none")
    elif body is NO_BODY:
        if spec["required"]:
            problems.append("the request body is required")
    else:
        problems += _schema_problems(body, spec["schema"], "body")
    return problems
