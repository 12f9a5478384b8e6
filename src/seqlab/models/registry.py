"""The encoder registry: every cell, seqlab's and a user's, chosen by a short name (`model.net.cell`).

A cell is registered by name with a builder (a function or an `Encoder` class) called with the sizes every
encoder takes, `input_dim`, `hidden_dim`, `num_layers`, `dropout`, `bidirectional`, plus the settings the
cell owns, given beside its name: `cell: {name: lru, r_min: 0.99}` (`cell: lru` alone takes the defaults).

Three routes in, one registry: seqlab's own cells register where they are defined (every module of
`seqlab.models` is imported once, so a new built-in cell is one new file there); an installed package
names its cells in the `seqlab.encoders` entry-point group (`janet = "parity_lab.cells:JANET"`); code
that is not installed calls `register_encoder("janet", JANET)`. Checkpoints store the name and the
package that provided it, and restoring looks the name up here: a checkpoint can only name installed code.
`Encoder` is the interface every cell's module offers the nets.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import torch
from torch import Tensor, nn

from seqlab.errors import ConfigError, check_dropout, check_positive

ENTRY_POINT_GROUP = "seqlab.encoders"
SHAPE = ("input_dim", "hidden_dim", "num_layers", "dropout", "bidirectional")  # what every builder takes
FROM_THE_NET = (*SHAPE, "causal")  # passed by the net, not settings (`causal` only where a builder takes it)


class Encoder(nn.Module):
    """A batch-first sequence encoder: `forward(x, mask=None, state=None) -> (outputs, state)`.

    `x` is (B, T, input_dim); `mask` (B, T), True on real steps, marks padding (None: no padding);
    `outputs` is (B, T, output_dim) and `state` whatever the encoder carries between calls (None is fine
    for a classifier). Subclasses set `output_dim` and may override `pool_last`, what `pooling: last` reads.
    """

    output_dim: int

    def forward(self, x: Tensor, mask: Tensor | None = None, state: Any = None) -> tuple[Tensor, Any]:
        raise NotImplementedError(f"{type(self).__name__} must define forward(x, mask, state)")

    def pool_last(self, out: Tensor, state: Any, mask: Tensor | None) -> Tensor:
        """The output at each row's last real step."""
        if mask is None:
            return out[:, -1]
        last = (mask.cumsum(1) * mask).argmax(1)
        return out[torch.arange(out.size(0), device=out.device), last]


@dataclass(frozen=True)
class EncoderEntry:
    name: str
    build: Callable[..., nn.Module]
    provider: str  # the distribution (or, for code registered by a call, the top-level module) providing it
    version: str | None

    def settings(self) -> dict[str, Any]:
        """The cell's own settings and their defaults (the builder's keyword arguments beyond SHAPE)."""
        params = inspect.signature(self.build).parameters.values()
        return {
            p.name: p.default
            for p in params
            if p.name not in FROM_THE_NET and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        }

    def record(self) -> dict[str, Any]:
        """What a checkpoint stores of the cell that built its encoder."""
        return {"name": self.name, "provider": self.provider, "version": self.version}


_entries: dict[str, EncoderEntry] = {}
_broken: dict[str, str] = {}  # entry points that failed to load: named when asked for
_loaded = False


@functools.cache
def _distributions() -> Mapping[str, list[str]]:
    return metadata.packages_distributions()  # scans every installed package: once a process


def _distribution_of(module: str) -> tuple[str, str | None]:
    top = module.split(".")[0]
    names = _distributions().get(top) or [top]
    try:
        return names[0], metadata.version(names[0])
    except metadata.PackageNotFoundError:
        return top, None


def qualified_name(build: Callable[..., Any]) -> str:
    return f"{build.__module__}.{build.__qualname__}"


def register_encoder(name: str, build: Callable[..., nn.Module] | None = None) -> Any:
    """Register `build` under `name` (also usable as a decorator: `@register_encoder("mycell")`)."""

    def add(build: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _entries and _entries[name].build is not build:
            raise ConfigError(
                f"encoder {name!r} is registered already (by {_entries[name].provider}); choose another name"
            )
        _entries[name] = EncoderEntry(name, build, *_distribution_of(build.__module__))
        return build

    return add if build is None else add(build)


def _load() -> None:
    """seqlab's own cells, then the installed packages' entry points, once."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import seqlab.models as models

    for module in pkgutil.iter_modules(models.__path__):
        importlib.import_module(f"{models.__name__}.{module.name}")
    for point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if point.name in _entries:
            continue
        try:
            build = point.load()
        except Exception as err:  # a broken plugin is named when its cell is asked for; the others work
            _broken[point.name] = (
                f"model.net.cell={point.name!r}: the {ENTRY_POINT_GROUP} entry point {point.value} (from "
                f"{point.dist.name if point.dist else '?'}) cannot be loaded: {type(err).__name__}: {err}"
            )
            continue
        version = point.dist.version if point.dist else None
        _entries[point.name] = EncoderEntry(
            point.name, build, point.dist.name if point.dist else "?", version
        )


def encoder_names() -> tuple[str, ...]:
    """Every registered cell's name: seqlab's own first, then the others, each in registration order."""
    _load()
    return tuple(sorted(_entries, key=lambda name: _entries[name].provider != "seqlab"))


def encoder_entry(name: str, stored: Mapping[str, Any] | None = None) -> EncoderEntry:
    """The entry registered under `name`; an unknown name gets one line (naming, for a cell a checkpoint
    recorded, the package that provided it)."""
    _load()
    if name in _entries:
        return _entries[name]
    if name in _broken:
        raise ConfigError(_broken[name])
    if stored and stored.get("provider"):
        provider, version = stored["provider"], stored.get("version")
        fix = (
            f"install it (pip install '{provider}=={version}') or register it with seqlab.register_encoder"
            if version
            else "register it with seqlab.register_encoder (the code was not installed)"
        )
        raise ConfigError(
            f"model.net.cell={name!r}: the checkpoint's cell came from {provider}{' ' + version if version else ''}, "
            f"which registers no cell {name!r} here; {fix}"
        )
    raise ConfigError(
        f"model.net.cell={name!r} is not a registered cell; registered: {', '.join(encoder_names())} (a package's "
        f"own cells register through the {ENTRY_POINT_GROUP} entry points or seqlab.register_encoder)"
    )


def cell_spec(cell: str | Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """`lru` or `{name: lru, r_min: 0.9}` -> ("lru", {"r_min": 0.9})."""
    if isinstance(cell, str):
        return cell, {}
    if isinstance(cell, Mapping) and isinstance(cell.get("name"), str):
        return cell["name"], {k: v for k, v in cell.items() if k != "name"}
    if isinstance(cell, Mapping) and "_target_" in cell:
        raise ConfigError(
            f"model.net.cell._target_={cell['_target_']!r}: cells are chosen by a registered name now; "
            "register the class (seqlab.register_encoder or the seqlab.encoders entry points) and write "
            "model.net.cell=<its name>"
        )
    raise ConfigError(f"model.net.cell={cell!r}: give a cell's name or {{name: <cell>, <its settings>}}")


def build_encoder(cell: str | Mapping[str, Any], **sizes: Any) -> nn.Module:
    """The encoder `cell` names, built with `sizes` (SHAPE, and `causal` where the builder takes it)
    and the cell's own settings; a setting the cell does not have gets one line listing those it has."""
    name, settings = cell_spec(cell)
    entry = encoder_entry(name)
    own = entry.settings()
    unknown = [k for k in settings if k not in own]
    if unknown:
        listed = ", ".join(f"{k}={v!r}" for k, v in own.items()) or "none"
        raise ConfigError(f"model.net.cell.{unknown[0]}: {name} has no such setting; its settings: {listed}")
    # the net's own sizes are named as the net's settings (model.net.hidden_dim), not the cell's
    check_positive(**{k: sizes[k] for k in ("input_dim", "hidden_dim", "num_layers") if k in sizes})
    if "dropout" in sizes:
        check_dropout(sizes["dropout"])
    accepted = inspect.signature(entry.build).parameters
    sizes = {k: v for k, v in sizes.items() if k in SHAPE or (k in FROM_THE_NET and k in accepted)}
    try:
        encoder = entry.build(**sizes, **settings)
    except ConfigError:
        raise
    except (ValueError, TypeError) as err:
        raise ConfigError(f"model.net.cell={name}: {err}") from None
    if not isinstance(encoder, Encoder):
        raise ConfigError(
            f"model.net.cell={name} built a {type(encoder).__name__}, not a seqlab.models.Encoder"
        )
    return encoder


def __getattr__(name: str) -> Any:
    if name == "CELLS":  # computed: packages installed later register more
        return encoder_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
