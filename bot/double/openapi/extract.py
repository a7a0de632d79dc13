"""Regenerate `operations.json`: the few GitHub REST operations the test double serves.

The source is GitHub's published OpenAPI description as the npm package `@octokit/openapi`
ships it (`generated/api.github.com.json`, GitHub's `rest-api-description` plus Octokit's
`x-octokit` extension). For each operation listed in `OPERATIONS` this keeps the path, the
method, the parameters, the JSON request-body schema and the success response's example, with
every `$ref` resolved to a bounded depth and OpenAPI 3.0's `nullable` turned into JSON Schema,
so that the double can validate requests with `jsonschema` and shape its answers offline.

Usage (needs `npm` and the npm registry; tests never run this):

    .venv/bin/python bot/double/openapi/extract.py         # npm pack the pinned version
    .venv/bin/python bot/double/openapi/extract.py --tarball octokit-openapi-23.0.2.tgz

Bump `VERSION` and `TARBALL_SHA256` together (`npm view @octokit/openapi@X dist` shows the
registry's sha1; the script prints the sha256 it saw), then update README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any, Final

PACKAGE: Final = "@octokit/openapi"
VERSION: Final = "23.0.2"
TARBALL_SHA256: Final = "71a18407dd5e8464f4e0525daf03deabbe65abd9287d6adc7b5d98f516cd0d0c"
MEMBER: Final = "package/generated/api.github.com.json"
HERE: Final = Path(__file__).resolve().parent
OUTPUT: Final = HERE / "operations.json"

# (method, path) exactly as the description spells them.
OPERATIONS: Final = (
    ("GET", "/app"),
    ("POST", "/app/installations/{installation_id}/access_tokens"),
    ("GET", "/app/hook/deliveries"),
    ("GET", "/app/hook/deliveries/{delivery_id}"),
    ("POST", "/app/hook/deliveries/{delivery_id}/attempts"),
    ("GET", "/repos/{owner}/{repo}/actions/runs"),
    ("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}"),
    ("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}/artifacts"),
    ("GET", "/repos/{owner}/{repo}/actions/artifacts/{artifact_id}/{archive_format}"),
    ("POST", "/repos/{owner}/{repo}/actions/runs/{run_id}/deployment_protection_rule"),
    ("GET", "/repos/{owner}/{repo}/contents/{path}"),
    ("POST", "/repos/{owner}/{repo}/check-runs"),
    ("PATCH", "/repos/{owner}/{repo}/check-runs/{check_run_id}"),
    ("GET", "/repos/{owner}/{repo}/commits/{ref}/check-runs"),
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}"),
    ("GET", "/repos/{owner}/{repo}/releases"),
    ("GET", "/repos/{owner}/{repo}/releases/{release_id}"),
    ("GET", "/repos/{owner}/{repo}/releases/tags/{tag}"),
    ("PATCH", "/repos/{owner}/{repo}/releases/{release_id}"),
    ("DELETE", "/repos/{owner}/{repo}/releases/{release_id}"),
    ("GET", "/repos/{owner}/{repo}/releases/{release_id}/assets"),
    ("GET", "/repos/{owner}/{repo}/releases/assets/{asset_id}"),
    ("GET", "/repos/{owner}/{repo}/git/ref/{ref}"),
    ("GET", "/repos/{owner}/{repo}/git/tags/{tag_sha}"),
    ("GET", "/repos/{owner}/{repo}/git/trees/{tree_sha}"),
    ("GET", "/repos/{owner}/{repo}/collaborators/{username}/permission"),
    ("GET", "/repos/{owner}/{repo}/issues"),
    ("POST", "/repos/{owner}/{repo}/issues"),
    ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments"),
    ("POST", "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions"),
    ("POST", "/app-manifests/{code}/conversions"),
)

MAX_REF_DEPTH: Final = 8
# Schema keywords kept; everything else (descriptions, examples, x-*) is dropped for size.
SCHEMA_KEYS: Final = frozenset(
    {
        "type", "properties", "required", "items", "enum", "const", "format", "pattern",
        "minLength", "maxLength", "minimum", "maximum", "minItems", "maxItems",
        "uniqueItems", "oneOf", "anyOf", "allOf", "not", "additionalProperties", "default",
    }
)  # fmt: skip


def _ref_target(spec: dict[str, Any], ref: str) -> Any:
    if not ref.startswith("#/"):
        raise ValueError(f"external $ref not supported: {ref}")
    node: Any = spec
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _deref(spec: dict[str, Any], node: Any) -> Any:
    """Follow `$ref`s at the top of `node` (not inside it)."""
    while isinstance(node, dict) and "$ref" in node:
        node = _ref_target(spec, node["$ref"])
    return node


def convert_schema(spec: dict[str, Any], node: Any, depth: int = 0) -> Any:
    """Return `node` as plain JSON Schema: refs inlined up to MAX_REF_DEPTH, then `{}`."""
    if isinstance(node, dict) and "$ref" in node:
        if depth >= MAX_REF_DEPTH:
            return {}
        return convert_schema(spec, _ref_target(spec, node["$ref"]), depth + 1)
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key not in SCHEMA_KEYS:
            continue
        if key == "properties":
            out[key] = {name: convert_schema(spec, sub, depth) for name, sub in value.items()}
        elif key in {"items", "not"} or (key == "additionalProperties" and isinstance(value, dict)):
            out[key] = convert_schema(spec, value, depth)
        elif key in {"oneOf", "anyOf", "allOf"}:
            out[key] = [convert_schema(spec, sub, depth) for sub in value]
        else:
            out[key] = value
    if node.get("nullable") is True:
        # OpenAPI 3.0 `nullable` is not JSON Schema: spell it as a union with null.
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
            if "enum" in out and None not in out["enum"]:
                out["enum"] = [*out["enum"], None]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


def _example(spec: dict[str, Any], response: dict[str, Any]) -> Any:
    content = _deref(spec, response).get("content", {})
    media = content.get("application/json")
    if media is None:
        return None
    if "example" in media:
        return media["example"]
    examples = media.get("examples") or {}
    if not examples:
        return None
    first = _deref(spec, next(iter(examples.values())))
    return first.get("value")


def extract_operation(spec: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    operation = spec["paths"][path][method.lower()]
    parameters = []
    for raw in operation.get("parameters", []):
        param = _deref(spec, raw)
        parameters.append(
            {
                "name": param["name"],
                "in": param["in"],
                "required": bool(param.get("required", False)),
                "schema": convert_schema(spec, param.get("schema", {})),
            }
        )
    body = None
    if "requestBody" in operation:
        request_body = _deref(spec, operation["requestBody"])
        media = request_body.get("content", {}).get("application/json")
        body = {
            "required": bool(request_body.get("required", False)),
            "schema": convert_schema(spec, media["schema"]) if media else {},
        }
    success = sorted(code for code in operation["responses"] if code.startswith(("2", "3")))
    status = success[0]
    return {
        "operation_id": operation["operationId"],
        "docs_url": operation.get("externalDocs", {}).get("url"),
        "parameters": parameters,
        "request_body": body,
        "success_status": int(status),
        "example": _without_keys(_example(spec, operation["responses"][status])),
    }


REDACTED_KEY = "<GitHub's example private key, removed: the double makes its own>"


def _without_keys(value: Any) -> Any:
    """Drop private keys from examples (the manifest conversion's `pem`): no key is committed."""
    if isinstance(value, dict):
        return {key: _without_keys(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_keys(item) for item in value]
    if isinstance(value, str) and "PRIVATE KEY-----" in value:
        return REDACTED_KEY
    return value


def extract(spec: dict[str, Any], *, file_sha256: str, tarball_sha256: str) -> dict[str, Any]:
    return {
        "source": {
            "package": PACKAGE,
            "version": VERSION,
            "file": MEMBER.removeprefix("package/"),
            "file_sha256": file_sha256,
            "tarball_sha256": tarball_sha256,
            "info_version": spec["info"]["version"],
        },
        "operations": {
            f"{method} {path}": extract_operation(spec, method, path) for method, path in OPERATIONS
        },
    }


def _npm_pack(dest: Path) -> Path:
    subprocess.run(
        ["npm", "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", str(dest), "--silent"],
        check=True,
    )
    (tarball,) = dest.glob("*.tgz")
    return tarball


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tarball", type=Path, help="an already downloaded npm tarball")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tarball = args.tarball or _npm_pack(Path(tmp))
        tarball_sha256 = hashlib.sha256(tarball.read_bytes()).hexdigest()
        if tarball_sha256 != TARBALL_SHA256:
            print(f"tarball sha256 {tarball_sha256} != pinned {TARBALL_SHA256}", file=sys.stderr)
            return 1
        with tarfile.open(tarball) as archive:
            member = archive.extractfile(MEMBER)
            if member is None:
                print(f"{MEMBER} missing from {tarball}", file=sys.stderr)
                return 1
            raw = member.read()
    spec = json.loads(raw)
    result = extract(
        spec, file_sha256=hashlib.sha256(raw).hexdigest(), tarball_sha256=tarball_sha256
    )
    text = json.dumps(result, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output} ({len(text.encode()):,} bytes, {len(OPERATIONS)} operations)")
    print(f"tarball sha256 {tarball_sha256}; {MEMBER} sha256 {result['source']['file_sha256']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
