"""Regenerate tests/payloads/*.json from GitHub's published webhook examples (npm packages).

    python tests/payloads/extract.py                # the versions pinned below
    python tests/payloads/extract.py --latest       # whatever the registry has now

Needs `npm` and access to the npm registry; nothing else in the test suite does. For each
package it asks `npm view` for the version's integrity, runs `npm pack` in a temporary folder,
checks the tarball against that integrity, and reads the JSON it needs from the tarball:

- `@octokit/webhooks-examples`: `api.github.com/index.json`, the community-collected example
  payloads, per event;
- `@octokit/openapi-webhooks`: `generated/api.github.com.json`, GitHub's own webhooks OpenAPI
  description: its `components.examples` (official check_run and ping examples) and the schema
  of `deployment_protection_rule`, for which no published example exists; one payload is built
  from that schema's own field examples and validated against it (with jsonschema).

README.md beside this script records what the last run used.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
EXAMPLES = "@octokit/webhooks-examples"
OPENAPI = "@octokit/openapi-webhooks"
PINNED = {EXAMPLES: "7.6.1", OPENAPI: "12.1.0"}
EXAMPLES_FILE = "package/api.github.com/index.json"
OPENAPI_FILE = "package/generated/api.github.com.json"

# Which examples to keep. "all": every example of the event. Otherwise: every example of the
# listed actions, plus the first example of each action in `sample` (pull_request examples are
# large: all of them would be ~0.7 MB).
SELECTION: dict[str, Any] = {
    "pull_request": {
        "actions": ["opened", "synchronize", "reopened"],
        "sample": ["closed", "labeled", "ready_for_review"],
    },
    "check_suite": "all",
    "check_run": "all",
    "workflow_run": "all",
    "release": "all",
    "issue_comment": "all",
    "ping": "all",
    "installation": "all",
    "installation_repositories": "all",
}
# components.examples of the OpenAPI description -> event
OPENAPI_EXAMPLES = {
    "check-run-completed": "check_run",
    "check-run-created": "check_run",
    "check-run-requested-action": "check_run",
    "check-run-rerequested": "check_run",
    "ping": "ping",
}
DPR_SCHEMA = "webhook-deployment-protection-rule-requested"


def npm(*args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(
        ["npm", *args], cwd=cwd, check=True, capture_output=True, text=True, timeout=300
    )
    return done.stdout.strip()


def fetch(package: str, version: str | None, workdir: Path) -> tuple[str, Path, dict[str, str]]:
    """Pack `package@version` (or the latest) into `workdir`; return version, tarball, facts."""
    if version is None:
        version = npm("view", package, "version")
    spec = f"{package}@{version}"
    integrity = npm("view", spec, "dist.integrity")
    license_name = npm("view", spec, "license")
    name = npm("pack", spec, "--silent", cwd=workdir).splitlines()[-1]
    tarball = workdir / name
    data = tarball.read_bytes()
    algorithm, _, expected = integrity.partition("-")
    if algorithm != "sha512":
        raise SystemExit(f"{spec}: unexpected integrity algorithm {algorithm}")
    actual = base64.b64encode(hashlib.sha512(data).digest()).decode()
    if actual != expected:
        raise SystemExit(f"{spec}: tarball does not match the registry's integrity")
    facts = {
        "integrity": integrity,
        "sha256": hashlib.sha256(data).hexdigest(),
        "license": license_name,
    }
    return version, tarball, facts


def read_member(tarball: Path, member: str) -> Any:
    with tarfile.open(tarball) as archive:
        extracted = archive.extractfile(member)
        if extracted is None:
            raise SystemExit(f"{tarball.name}: {member} is not a file")
        return json.load(extracted)


def select(event: str, examples: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    rule = SELECTION[event]
    indexed = list(enumerate(examples))
    if rule == "all":
        return indexed
    chosen = [(i, e) for i, e in indexed if e.get("action") in rule["actions"]]
    for action in rule["sample"]:
        chosen.extend([(i, e) for i, e in indexed if e.get("action") == action][:1])
    return sorted(chosen, key=lambda pair: pair[0])


class SchemaExample:
    """Build a payload from a JSON schema: required fields, filled from the schema's examples."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.components = document["components"]["schemas"]

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            schema = self.components[schema["$ref"].rsplit("/", 1)[-1]]
        return schema

    def build(self, schema: dict[str, Any], *, every_property: bool = False) -> Any:
        schema = self.resolve(schema)
        for key in ("anyOf", "oneOf"):
            if key in schema:
                options = [self.resolve(o) for o in schema[key]]
                usable = [o for o in options if o.get("type") != "null"] or options
                return self.build(usable[0])
        if "allOf" in schema:
            merged: dict[str, Any] = {}
            for part in schema["allOf"]:
                value = self.build(part)
                if isinstance(value, dict):
                    merged.update(value)
            return merged
        if schema.get("examples"):
            return schema["examples"][0]
        if "enum" in schema:
            return next((v for v in schema["enum"] if v is not None), None)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind == "object" or "properties" in schema:
            names = schema.get("properties", {})
            wanted = names if every_property else schema.get("required", [])
            return {name: self.build(names[name]) for name in wanted if name in names}
        if kind == "array":
            return []
        if kind == "string":
            return {
                "date-time": "2024-05-01T12:00:00Z",
                "uri": "https://api.github.com/",
                "email": "octocat@github.com",
            }.get(schema.get("format", ""), "example")
        return {"integer": 1, "number": 1.0, "boolean": False, "null": None}.get(str(kind))


def deployment_protection_rule(document: dict[str, Any]) -> dict[str, Any]:
    builder = SchemaExample(document)
    schema = document["components"]["schemas"][DPR_SCHEMA]
    payload: dict[str, Any] = builder.build(schema, every_property=True)
    # The schema gives no example for these two; make them agree with the rest of the payload.
    repository = payload["repository"]["full_name"]
    payload["environment"] = "production"
    payload["deployment_callback_url"] = (
        f"https://api.github.com/repos/{repository}/actions/runs/1/deployment_protection_rule"
    )
    try:
        import jsonschema  # type: ignore[import-untyped]
    except ImportError:
        print("jsonschema not installed: deployment_protection_rule example not validated")
        return payload
    validator_schema = {"$ref": f"#/components/schemas/{DPR_SCHEMA}", **document}
    jsonschema.Draft202012Validator(validator_schema).validate(payload)
    return payload


def write(event: str, examples: list[dict[str, Any]]) -> int:
    text = json.dumps({"event": event, "examples": examples}, separators=(",", ":"))
    (HERE / f"{event}.json").write_text(text + "\n", encoding="utf-8")
    return len(text) + 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latest", action="store_true", help="use the registry's latest versions")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        workdir = Path(temp)
        ex_version, ex_tar, ex_facts = fetch(
            EXAMPLES, None if args.latest else PINNED[EXAMPLES], workdir
        )
        api_version, api_tar, api_facts = fetch(
            OPENAPI, None if args.latest else PINNED[OPENAPI], workdir
        )
        index = {entry["name"]: entry["examples"] for entry in read_member(ex_tar, EXAMPLES_FILE)}
        document = read_member(api_tar, OPENAPI_FILE)

    examples_source = f"{EXAMPLES}@{ex_version} {EXAMPLES_FILE.removeprefix('package/')}"
    openapi_source = f"{OPENAPI}@{api_version} {OPENAPI_FILE.removeprefix('package/')}"
    out: dict[str, list[dict[str, Any]]] = {event: [] for event in SELECTION}
    for event in SELECTION:
        for number, payload in select(event, index.get(event, [])):
            origin = f"{examples_source} {event}[{number}]"
            out[event].append({"origin": origin, "payload": payload})
    for name, event in OPENAPI_EXAMPLES.items():
        payload = document["components"]["examples"][name]["value"]
        out[event].append(
            {"origin": f"{openapi_source} components.examples.{name}", "payload": payload}
        )
    origin = (
        f"{openapi_source} components.schemas.{DPR_SCHEMA} (built from the schema's field examples)"
    )
    out["deployment_protection_rule"] = [
        {"origin": origin, "payload": deployment_protection_rule(document)}
    ]

    total = 0
    for event, examples in sorted(out.items()):
        size = write(event, examples)
        total += size
        print(f"{event:28} {len(examples):3} examples {size:8} bytes")
    print(f"{'total':28} {sum(map(len, out.values())):3} examples {total:8} bytes")
    for package, version, facts in (
        (EXAMPLES, ex_version, ex_facts),
        (OPENAPI, api_version, api_facts),
    ):
        license_name, integrity, sha256 = facts["license"], facts["integrity"], facts["sha256"]
        print(f"{package}@{version}: {license_name}, {integrity}, sha256 {sha256}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
