"""A user's own config folders beside seqlab's: `$SEQLAB_CONFIG_PATH` and Hydra's `--config-dir`.

Kept free of heavy imports: Hydra's search-path plugin (`hydra_plugins/seqlab_searchpath`) reads it for
every composition.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

ENV_VAR = "SEQLAB_CONFIG_PATH"
SEQLAB_CONF = Path(__file__).resolve().parent / "conf"  # seqlab's own configs (package data)


def env_entries() -> list[str]:
    """`$SEQLAB_CONFIG_PATH` (entries joined by os.pathsep: folders, or `pkg://package.module`) as Hydra
    search-path entries (`file://<absolute path>` or `pkg://...`)."""
    parts = [p for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p]
    entries: list[str] = []
    while parts:
        part = parts.pop(0)
        if part in ("pkg", "file") and parts and parts[0].startswith("//"):  # "pkg://x" split at its ':'
            part += ":" + parts.pop(0)
        if part.startswith("pkg://"):
            entries.append(part)
        else:
            entries.append("file://" + str(Path(part.removeprefix("file://")).expanduser().absolute()))
    return entries


def command_line_dirs(argv: Sequence[str]) -> list[str]:
    """The folders given to Hydra's `--config-dir` / `-cd` (either `--config-dir DIR` or `--config-dir=DIR`)."""
    dirs = []
    for i, arg in enumerate(argv):
        if arg in ("--config-dir", "-cd") and i + 1 < len(argv):
            dirs.append("file://" + str(Path(argv[i + 1]).absolute()))
        elif arg.startswith(("--config-dir=", "-cd=")):
            dirs.append("file://" + str(Path(arg.split("=", 1)[1]).absolute()))
    return dirs


def folder_of(entry: str, source: str) -> Path:
    """The folder a search-path entry names; ValueError in one line if there is none."""
    if entry.startswith("pkg://"):
        module = entry.removeprefix("pkg://").replace("/", ".")
        try:
            spec = importlib.util.find_spec(module)
        except ModuleNotFoundError:
            spec = None
        if spec is None or not spec.submodule_search_locations:
            raise ValueError(
                f"{source}: {entry!r} names no importable package folder; install the package that holds "
                "the configs, or give a folder path"
            )
        return Path(list(spec.submodule_search_locations)[0])
    folder = Path(entry.removeprefix("file://"))
    if not folder.is_dir():
        reason = "is not a folder" if folder.exists() else "does not exist"
        raise ValueError(f"{source}: the config folder {str(folder)!r} {reason}; create it or fix the path")
    return folder


CHECKED_GROUPS = ("experiment", "sweep", "hparams_search")  # the groups users name their own in


def check_user_configs(argv: Sequence[str]) -> list[str]:
    """Check every user config folder before Hydra starts; return a warning for each user config that
    seqlab's own config of the same name hides (Hydra takes the first match on its search path, and
    seqlab's package folder comes first). An experiment (sweep, search) found in no folder is one line
    naming the folders searched, instead of Hydra's list of every option."""
    warnings = []
    named = [(e, ENV_VAR) for e in env_entries()] + [(d, "--config-dir") for d in command_line_dirs(argv)]
    folders = [SEQLAB_CONF] + [folder_of(entry, source) for entry, source in named]
    for arg in argv:
        group, _, name = arg.lstrip("+").partition("=")
        if (
            group in CHECKED_GROUPS
            and name
            and "," not in name
            and not name.startswith(("$", "glob(", "choice("))
            and not any((folder / group / f"{name}.yaml").is_file() for folder in folders)
        ):
            searched = ", ".join(str(f / group) for f in folders)
            hint = (
                f"; a project's own are found through {ENV_VAR} (unset here) or --config-dir"
                if not named
                else ""
            )
            raise ValueError(f"{group}={name}: no {name}.yaml in {searched}{hint}")
    for entry, source in named:
        folder = folder_of(entry, source)
        for path in sorted(folder.rglob("*.yaml")):
            relative = path.relative_to(folder)
            if (SEQLAB_CONF / relative).is_file():
                warnings.append(
                    f"warning: {path} is hidden by seqlab's own {relative.as_posix()} (the first config of a "
                    "name on Hydra's search path wins, and seqlab's come first); give yours another name"
                )
    return warnings
