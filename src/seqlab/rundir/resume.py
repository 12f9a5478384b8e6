"""What a new start finds in its run dir: resume from the last checkpoint (falling back past a damaged one),
or refuse to overwrite an earlier run's."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from seqlab.errors import ConfigError
from seqlab.restore import read_checkpoint
from seqlab.rundir.claims import resuming
from seqlab.rundir.records import last_checkpoint

log = logging.getLogger(__name__)


def resume_checkpoint(cfg: DictConfig) -> tuple[str, dict[str, Any]] | None:
    """The checkpoint training starts from, and its contents (read once, here): `ckpt_path`, else the run
    dir's last.ckpt when resuming (or the newest intact checkpoint, if that one is damaged).

    A SLURM requeue (SLURM_RESTART_COUNT > 0) resumes as `resume=true` does. Without either, a run
    dir that already holds checkpoints is refused rather than overwritten.
    """
    if cfg.get("ckpt_path"):
        return str(cfg.ckpt_path), read_checkpoint(cfg.ckpt_path)
    last = last_checkpoint(cfg.paths.output_dir)
    others = [p for p in last.parent.glob("*.ckpt") if p != last] if last.parent.is_dir() else []
    if resuming(cfg):
        if last.is_file() or others:  # last.ckpt damaged or gone: the newest intact one
            intact, checkpoint = intact_checkpoint(last)
            log.info("Resuming from %s", intact)
            return str(intact), checkpoint
        # A requeue before the first checkpoint must start from scratch; a mistyped run dir should not
        # pass unnoticed, so this is a warning that names the dir.
        log.warning(
            "resume: %s holds no checkpoints/last.ckpt: training from scratch. If you meant to continue "
            "another run, give its run_name=... (or hydra.run.dir=...)",
            cfg.paths.output_dir,
        )
        return None
    if last.exists() or others:
        raise ConfigError(
            f"{cfg.paths.output_dir} already holds the checkpoints of an earlier run: resume=true continues "
            "it; another run_name=... (or hydra.run.dir=...) starts a new one"
        )
    return None


def intact_checkpoint(last: Path) -> tuple[Path, dict[str, Any]]:
    """`last` and its contents when it reads; else the newest checkpoint beside it that does, after saying
    so in one line. A damaged file is kept aside as `<name>.damaged` (never deleted); none intact is a
    ConfigError."""
    if not last.exists():
        damage = "missing"
    else:
        try:
            return last, read_checkpoint(last)
        except ConfigError as err:
            damage = str(err).split(": ", 1)[-1]
    others = sorted(last.parent.glob("*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
    for candidate in (p for p in others if p != last):
        try:
            checkpoint = read_checkpoint(candidate)
        except ConfigError:
            continue
        if last.exists():
            aside = last.with_name(last.name + ".damaged")
            last.replace(aside)
            log.warning(
                "resume: %s is damaged (%s); kept as %s, resuming from %s, the newest intact checkpoint",
                last,
                damage,
                aside.name,
                candidate,
            )
        else:
            log.warning(
                "resume: %s is missing; resuming from %s, the newest intact checkpoint", last, candidate
            )
        return candidate, checkpoint
    rest = [p.name for p in others if p != last]
    raise ConfigError(
        f"resume: no intact checkpoint in {last.parent}: {last.name}: {damage}"
        + (f"; {', '.join(rest)} cannot be read either" if rest else "")
        + "; start the run again with another run_name=..., or put an intact checkpoint there"
    )
