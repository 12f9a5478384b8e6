"""Config plumbing shared by the entry points: where things are, errors, printing."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from seqlab.errors import ConfigError
from seqlab.user_config import SEQLAB_CONF


def project_root() -> Path:
    """The repository root for a source checkout (editable install), else the working directory: an
    installed seqlab writes `outputs/` and reads `data/` where it is run, never inside site-packages."""
    root = Path(__file__).resolve().parents[2]
    return (
        root
        if (root / "pyproject.toml").exists() and (root / "src" / "seqlab").is_dir()
        else Path(os.getcwd())
    )


# The configs ship inside the package (package data), so a wheel finds them as a checkout does.
CONF_DIR = str(SEQLAB_CONF)

if not OmegaConf.has_resolver("seqlab_root"):
    OmegaConf.register_new_resolver("seqlab_root", lambda: str(project_root()))


def run_id() -> str:
    """A run name no other process gets: local time to the millisecond (so names sort by start), then
    four random hex digits."""
    now = datetime.now()
    return f"{now:%Y-%m-%d_%H-%M-%S}.{now.microsecond // 1000:03d}_{secrets.token_hex(2)}"


if not OmegaConf.has_resolver("run_id"):  # cached: one name per config, also across a sweep's jobs
    OmegaConf.register_new_resolver("run_id", run_id, use_cache=True)
if not OmegaConf.has_resolver("range_list"):  # e.g. LR milestones: ${range_list:6,39} -> [6, ..., 38]
    OmegaConf.register_new_resolver("range_list", lambda start, stop: list(range(int(start), int(stop))))


def flatten(node: Any, sep: str = "/", prefix: str = "") -> dict[str, Any]:
    """Nested mappings (dicts, DictConfigs) as one level, keys joined by `sep` ({"a": {"b": 1}} ->
    {"a/b": 1}); any other value, lists included, is a leaf."""
    if not isinstance(node, Mapping):
        return {prefix: node}
    flat: dict[str, Any] = {}
    for key, value in node.items():
        flat |= flatten(value, sep, f"{prefix}{sep}{key}" if prefix else str(key))
    return flat


def iter_targets(node: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """(full key, target) for every `_target_` below `node`."""
    if isinstance(node, DictConfig | dict):
        for k, v in node.items():
            if k == "_target_":
                yield key, str(v)
            else:
                yield from iter_targets(v, f"{key}.{k}" if key else str(k))
    elif isinstance(node, ListConfig | list):
        for i, v in enumerate(node):
            yield from iter_targets(v, f"{key}[{i}]")


BUILT_IN_TARGETS = ("seqlab.", "torch.optim.")


def trusted_packages(declared: Iterable[str] = ()) -> tuple[str, ...]:
    """The packages a checkpoint's config may build objects from besides seqlab and torch.optim: those
    the command declares (`trusted_packages=[mylab]`) and those in $SEQLAB_TRUSTED_PACKAGES (commas).

    Trust comes from whoever loads a checkpoint, never from the checkpoint: a list stored inside it would
    let any file vouch for itself.
    """
    names = [*declared, *os.environ.get("SEQLAB_TRUSTED_PACKAGES", "").split(",")]
    return tuple(dict.fromkeys(name.strip() for name in names if name and name.strip()))


def check_safe_targets(node: Any, where: str = "", trusted: Iterable[str] = ()) -> None:
    """Refuse a stored config (`where` names it) that would instantiate anything outside seqlab,
    torch.optim and the `trusted` packages."""
    allowed = BUILT_IN_TARGETS + tuple(f"{name}." for name in trusted)
    for key, target in iter_targets(node, where):
        if not target.startswith(allowed):
            package = target.split(".")[0]
            raise ConfigError(
                f"{key}._target_={target!r}: the checkpoint's config builds objects of {package!r}, a package "
                f"not trusted; if you trust this checkpoint, add trusted_packages=[{package}] to the command "
                f"or export SEQLAB_TRUSTED_PACKAGES={package}"
            )


def print_config(cfg: DictConfig, groups: tuple[str, ...] = ()) -> None:
    """Print the composed config as a tree, one branch per top-level key."""
    import rich
    import rich.syntax
    import rich.tree

    tree = rich.tree.Tree("config", guide_style="dim")
    keys = list(groups) + [k for k in cfg if k not in groups and k != "hydra"]
    for key in keys:
        if key not in cfg:
            continue
        value = cfg[key]
        text = (
            OmegaConf.to_yaml(value, resolve=False)
            if isinstance(value, DictConfig | ListConfig)
            else str(value)
        )
        tree.add(str(key)).add(rich.syntax.Syntax(text.rstrip(), "yaml"))
    rich.print(tree)


def compose(*overrides: str, run_dir: str | Path | None = None) -> DictConfig:
    """The config `python -m seqlab.train <overrides>` would run, for notebooks and scripts: seqlab's
    configs and the user's (`SEQLAB_CONFIG_PATH`), its run dir `run_dir` or, by default, the one the
    command would make (`outputs/<task_name>/<run_name>/`). Train it with `seqlab.fit(cfg)`."""
    from hydra import compose as compose_config
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from seqlab.user_config import check_user_configs

    check_user_configs(list(overrides))
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose_config("train", overrides=list(overrides), return_hydra_config=True)
    GlobalHydra.instance().clear()
    out = Path(run_dir) if run_dir is not None else Path(str(cfg.hydra.run.dir))
    with open_dict(cfg):
        cfg.paths.output_dir = str(out.absolute())
        cfg.hydra.runtime.output_dir = str(out.absolute())
        cfg.hydra.job.num = 0
    HydraConfig().set_config(cfg)
    return cfg
