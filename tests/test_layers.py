"""The layering of docs/ARCHITECTURE.md holds: no module imports a layer above its own.

Every `import bot.…` and `from bot… import …` in `bot/` (inside functions too) is read with
`ast` and checked against `LAYERS`: a module may import its own unit and any unit of a lower
rank, never one of its own rank or above. Units of one rank are siblings kept apart on purpose
(the engine knows nothing of GitHub; the store knows nothing of the engine).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

BOT = Path(__file__).resolve().parents[1] / "bot"

LAYERS: dict[str, int] = {
    # the foundation every layer may use
    "__init__": 0,
    "errors": 0,
    "secrets": 0,
    "commit_locks": 0,
    # pure engine, GitHub I/O, process settings, the GitHub test double
    "engine": 1,
    "github": 1,
    "settings": 1,
    "double": 1,
    # shared vocabulary built on the engine's policy model
    "config": 2,
    "events": 2,
    # storage and rendering
    "store": 3,
    "report": 3,
    # what handlers are given, and what they use
    "jobs": 4,
    "retention": 4,
    "checks": 4,
    # one handler per job kind
    "handlers": 5,
    # operations, the App's processes, the command line
    "ops": 6,
    "app": 7,
    "cli": 8,
    "__main__": 9,
}
"""Each unit of `bot/` (a subpackage or a top-level module) and its rank, lowest first."""

ENGINE_FORBIDDEN = ("aiohttp", "gidgethub", "jwt", "psycopg", "procrastinate", "obstore", "sqlite3")
"""Libraries the engine (a pure function of bytes and policy) must never import."""


def unit_of(module: str) -> str:
    """Return the unit a dotted module name belongs to: `bot.engine.scan` → `engine`."""
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def module_name(path: Path, root: Path = BOT) -> str:
    """Return the dotted name of a file under `root` (a folder called `bot`)."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, root: Path = BOT) -> Iterator[tuple[int, str]]:
    """Yield (line, dotted name) for every import in a file, absolute or relative."""
    own = module_name(path, root)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            if base == "bot":
                # `from bot import config` imports the unit `config`; `__version__` is bot's own.
                for alias in node.names:
                    is_unit = (root / alias.name).is_dir() or (root / f"{alias.name}.py").is_file()
                    yield node.lineno, f"bot.{alias.name}" if is_unit else "bot"
            else:
                yield node.lineno, base


def violations(root: Path = BOT) -> list[str]:
    """Return every import in `root` that breaks the layering, as `file:line: a -> b` lines."""
    found: list[str] = []
    for path in sorted(root.rglob("*.py")):
        source = unit_of(module_name(path, root))
        if source not in LAYERS:
            found.append(f"{path}: unit {source!r} has no rank in LAYERS")
            continue
        for line, name in imported_modules(path, root):
            where = f"{path.relative_to(root.parent)}:{line}"
            if source == "engine" and name.split(".")[0] in ENGINE_FORBIDDEN:
                found.append(f"{where}: engine -> {name} (the engine does no I/O)")
            if name != "bot" and not name.startswith("bot."):
                continue
            target = unit_of(name)
            if target == source or target == "__init__":
                continue
            if target not in LAYERS:
                found.append(f"{where}: {source} -> {target}, a unit with no rank in LAYERS")
            elif LAYERS[target] >= LAYERS[source]:
                found.append(
                    f"{where}: {source} (rank {LAYERS[source]}) -> {target} "
                    f"(rank {LAYERS[target]}): a layer may import only the ones below it"
                )
    return found


def test_every_import_points_down() -> None:
    assert violations() == []


def test_every_unit_is_ranked() -> None:
    units = {p.stem for p in BOT.glob("*.py")} | {p.name for p in BOT.iterdir() if p.is_dir()}
    units.discard("__pycache__")
    assert units <= set(LAYERS), sorted(units - set(LAYERS))


@pytest.mark.parametrize(
    ("unit", "source", "expected"),
    [
        ("engine", "from bot.app.serve import serve\n", "engine (rank 1) -> app (rank 7)"),
        ("store", "from bot.handlers.releases import x\n", "store (rank 3) -> handlers (rank 5)"),
        ("handlers", "def f():\n    import bot.ops.metrics\n", "handlers (rank 5) -> ops"),
        ("engine", "import aiohttp\n", "engine -> aiohttp"),
        ("github", "from ..engine import model\n", "github (rank 1) -> engine (rank 1)"),
    ],
)
def test_a_wrong_import_is_caught(tmp_path: Path, unit: str, source: str, expected: str) -> None:
    """The checker itself: an upward or sideways import in a copy of the tree is reported."""
    fake = tmp_path / "bot"
    (fake / unit).mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / unit / "__init__.py").write_text("")
    (fake / unit / "bad.py").write_text(source)
    found = violations(fake)
    assert any(expected in line for line in found), found
