"""The developer docs name what exists: docs/development.md's layout, walk-throughs and tests table."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

from tests.helpers import REPO

SRC = REPO / "src" / "seqlab"
DEVELOPMENT = (REPO / "docs" / "development.md").read_text()


def layout_entries() -> dict[str, str]:
    """The `src/seqlab/` part of the Layout block: entry (file or folder/) -> its description."""
    block = DEVELOPMENT.split("## Layout", 1)[1].split("```", 2)[1]
    entries: dict[str, str] = {}
    current = None
    for line in block.split("src/seqlab/\n", 1)[1].splitlines():
        if not line.startswith(" "):
            break
        if line.startswith("  ") and not line.startswith("   "):
            current, _, text = line.strip().partition(" ")
            entries[current] = text
        elif current:
            entries[current] += " " + line.strip()
    return entries


def test_the_layout_names_every_module_of_seqlab_and_only_modules_that_exist():
    named: set[Path] = set()
    for entry, text in layout_entries().items():
        folder = SRC / entry.rstrip("/") if entry.endswith("/") else SRC
        if entry.endswith(".py"):
            named.add(SRC / entry)
        for name in re.findall(r"(?<![\w/.])([a-z_]+\.py)\b", text):
            path = folder / name if (folder / name).exists() else SRC / name
            assert path.exists(), f"docs/development.md's layout names {name} under {entry}: no such module"
            named.add(path)
    modules = {p for p in SRC.rglob("*.py") if p.name != "__init__.py" and "conf" not in p.parts}
    unnamed = sorted(str(p.relative_to(SRC)) for p in modules - named)
    assert not unnamed, f"modules docs/development.md's layout does not name: {unnamed}"


def test_every_path_and_dotted_name_in_the_development_doc_exists():
    for path in set(re.findall(r"`?(seqlab/[\w/]+\.py)", DEVELOPMENT)):
        assert (REPO / "src" / path).exists(), f"docs/development.md names {path}: no such file"
    for dotted in set(re.findall(r"\b(seqlab(?:\.\w+)+)", DEVELOPMENT)):
        parts = dotted.split(".")
        for cut in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
                break
            except ImportError:
                continue
        for attr in parts[cut:]:
            assert hasattr(obj, attr), f"docs/development.md names {dotted}: {attr} not found"
            obj = getattr(obj, attr)


def test_the_tests_table_lists_every_test_module():
    listed = set(re.findall(r"`(test_\w+\.py)`", DEVELOPMENT))
    present = {p.name for p in (REPO / "tests").glob("test_*.py")}
    assert present <= listed, f"docs/development.md's tests table misses {sorted(present - listed)}"
    assert listed <= present, (
        f"docs/development.md's tests table names missing files {sorted(listed - present)}"
    )


def top_level_imports(path: Path) -> set[str]:
    """The modules a file imports when it loads (imports inside functions, made when used, left out)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return found


def unit_of(module: str) -> str:
    """seqlab.models.lru -> models; seqlab.pipeline -> pipeline: the package or top-level module."""
    return module.split(".")[1]


def test_imports_point_one_way_models_and_data_know_nothing_above_them():
    graph: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        if "conf" in path.parts:
            continue
        module = ".".join(path.relative_to(SRC.parent).with_suffix("").parts).removesuffix(".__init__")
        imports = top_level_imports(path)
        if module.startswith(("seqlab.models", "seqlab.data")):
            heavy = {i for i in imports if i.split(".")[0] in ("lightning", "hydra", "omegaconf")}
            if module.startswith("seqlab.models"):
                assert not heavy, f"{module} imports {heavy}: models are plain nn.Modules"
            above = {i for i in imports if i.startswith(("seqlab.models", "seqlab.tasks", "seqlab.pipeline"))}
            assert module.startswith("seqlab.models") or not above, f"{module} imports {above}"
        if module != "seqlab":
            units = {unit_of(i) for i in imports if i.startswith("seqlab.")} - {unit_of(module)}
            graph.setdefault(unit_of(module), set()).update(units)
    visiting, done = set(), set()

    def visit(
        unit: str, trail: list[str]
    ) -> None:  # depth-first: a unit met again on its own trail is a cycle
        assert unit not in visiting, f"import cycle: {' -> '.join([*trail, unit])}"
        if unit in done:
            return
        visiting.add(unit)
        for other in sorted(graph.get(unit, ())):
            visit(other, [*trail, unit])
        visiting.discard(unit)
        done.add(unit)

    for unit in sorted(graph):
        visit(unit, [])
