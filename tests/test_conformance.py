"""The ECMA-426 conformance suite (tc39/source-map-tests, vendored under tests/conformance/).

Every invalid map of `source-map-spec-tests.json` must be reported `sourcemap/invalid`, and no
valid one: read as a `.map` file (whole, and in reads of 1 to 7 bytes), and inline in a
`data:` URL, with the compiled `mappings` check and with its pure-Python twin.
"""

from __future__ import annotations

import base64
import io
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.engine import mapcheck
from bot.engine.model import Rule
from bot.engine.sourcemaps import check_code_stream, check_map_stream

SUITE_DIR = Path(__file__).parent / "conformance" / "source-map-tests"
SUITE: list[dict[str, Any]] = json.loads(
    (SUITE_DIR / "source-map-spec-tests.json").read_text(encoding="utf-8")
)["tests"]


class TinyReads(io.BytesIO):
    """Reads of 1 to 7 bytes, in a seeded order: every boundary falls somewhere."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self._rng = random.Random(426)

    def read(self, size: int | None = -1) -> bytes:
        return super().read(self._rng.randint(1, 7))


@pytest.fixture(params=["compiled", "python"])
def feeder(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "compiled" and mapcheck.compiled_feeder() is None:
        pytest.fail("bot/engine/_vlq.c was not built: reinstall the package (pip install -e .)")
    mapcheck.use_python(request.param == "python")
    yield request.param
    mapcheck.use_python(False)


def test_the_vendored_suite_is_whole() -> None:
    assert len(SUITE) == 99
    assert sum(not case["sourceMapIsValid"] for case in SUITE) == 67
    assert (SUITE_DIR / "LICENSE.md").is_file()
    assert "7bfa363225f027f6d49f412923f75950ed69de28" in (SUITE_DIR / "ORIGIN.md").read_text()


def _invalid_messages(observations: list[Any]) -> list[str]:
    return [o.message for o in observations if o.rule is Rule.INVALID_MAP]


@pytest.mark.parametrize("case", SUITE, ids=[case["name"] for case in SUITE])
def test_conformance_case(case: dict[str, Any], feeder: str) -> None:
    data = (SUITE_DIR / "resources" / case["sourceMapFile"]).read_bytes()
    path = "dist/" + case["sourceMapFile"]
    whole = _invalid_messages(check_map_stream(io.BytesIO(data), path=path))
    tiny = _invalid_messages(check_map_stream(TinyReads(data), path=path))
    code = b"x();\n//# sourceMappingURL=data:application/json;base64," + base64.b64encode(data)
    inline = _invalid_messages(check_code_stream(io.BytesIO(code), path="dist/x.js").observations)
    if case["sourceMapIsValid"]:
        assert whole == tiny == inline == [], case["description"]
    else:
        assert len(whole) == 1, case["description"]
        assert tiny == whole and inline == whole, (whole, tiny, inline)
