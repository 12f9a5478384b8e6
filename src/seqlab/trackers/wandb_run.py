"""`logger=wandb`: Lightning's WandbLogger, offline unless told otherwise, one W&B run per run dir."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from seqlab.errors import ConfigError
from seqlab.trackers.common import RUN_FILES, first_line, read_ids, record_id, require, run_label, sweep_dir

WANDB_ILLEGAL = "/\\#?%:"  # W&B refuses these in a project name
WANDB_MODES = ("online", "offline", "disabled", "shared", "dryrun", "run")


class WandbLogger(LightningWandbLogger):
    """Lightning's WandbLogger, offline unless told otherwise, in the run dir, continuing the run id in
    the run dir's `tracker_ids.json` if there is one (`resume="allow"`)."""

    def __init__(
        self,
        run_dir: str,
        project: str,
        name: str | None = None,
        group: str | None = None,
        job_type: str | None = None,
        mode: str = "offline",
        **kwargs: Any,
    ) -> None:
        require("wandb")
        project = str(project)
        bad = sorted({c for c in project if c in WANDB_ILLEGAL})
        if not project or bad or len(project) > 128:
            why = f"holds {' '.join(bad)}" if bad else "must be 1 to 128 characters"
            raise ConfigError(
                f"logger.wandb.project={project!r}: a W&B project name {why} (it may not hold any of "
                f"{' '.join(WANDB_ILLEGAL)}); choose another logger.wandb.project=... (it defaults to task_name)"
            )
        if mode not in WANDB_MODES:
            raise ConfigError(
                f"logger.wandb.mode={mode!r} (or WANDB_MODE): W&B knows online, offline, shared and disabled"
            )
        self.run_dir = Path(run_dir)
        sweep = sweep_dir()
        super().__init__(
            name=name or run_label(self.run_dir),
            save_dir=str(self.run_dir),
            id=read_ids(self.run_dir).get("wandb", {}).get("id"),
            project=project,
            group=group or (sweep.name if sweep else project),
            # `${model._target_}` by default: the task's class name (SequenceClassifier, LanguageModel)
            job_type=job_type.rsplit(".", 1)[-1] if job_type else None,
            mode=mode,
            resume="allow",
            **kwargs,
        )
        if self._wandb_init.get("anonymous") is None:  # Lightning passes None; wandb warns about any value
            del self._wandb_init["anonymous"]

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        if self._experiment is not None:
            return self._experiment
        import wandb

        if wandb.run is not None:  # left open by an earlier job of this sweep, in this process: not ours
            wandb.run.finish()
        try:
            run = LightningWandbLogger.experiment.fget(self)
        except Exception as err:  # wandb.init's complaint (no login, a refused setting): one line
            raise ConfigError(
                f"logger.wandb: W&B cannot start the run ({first_line(err)}); for an online run log in "
                "(wandb login, or WANDB_API_KEY), or run offline (WANDB_MODE=offline) and `wandb sync` later"
            ) from None
        if self._wandb_init.get("mode") != "disabled":
            record = {"id": run.id, "project": self._project, "mode": self._wandb_init.get("mode")}
            record_id(self.run_dir, "wandb", record)
        return run

    @rank_zero_only
    def log_outcome(self, metrics: Mapping[str, float], best_checkpoint: str | None, step: int) -> None:
        """The final metrics (`final/<name>`, also the run's summary), the run dir's record files saved
        with the run, the best checkpoint's path in the summary."""
        self.log_metrics({f"final/{k}": v for k, v in metrics.items()}, step=step)
        run = self.experiment
        for path in (self.run_dir / name for name in RUN_FILES):
            if path.is_file():
                run.save(str(path), base_path=str(self.run_dir), policy="now")
        if best_checkpoint:
            run.summary["best_checkpoint"] = str(Path(best_checkpoint).absolute())
        run.finish()  # the next job of a sweep, in this process, starts its own run
