"""The developer docs name what exists: docs/development.md's layout, walk-throughs and tests table."""

from __future__ import annotations

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
