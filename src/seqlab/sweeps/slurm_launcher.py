"""`hydra/launcher=slurm`: submitit's SLURM launcher, which also records what it submits, and with
`hydra.launcher.wait=false` submits the sweep and returns at once.

The record (`<sweep dir>/slurm_jobs.json`, see `seqlab.sweeps.queue`) lets a summary list the jobs that have not
started. Without waiting, the jobs report themselves: each rewrites the sweep's summary as it ends
(`SweepSummary`, under the summary's lock), and `python -m seqlab.summarize <sweep dir>` shows at any time
which jobs wait, run, are done, failed or were interrupted. The same command again submits only what is
left: jobs done (metrics.json) or still queued (squeue) are not submitted twice.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra.types import HydraContext, TaskFunction
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as SubmititSlurmLauncher
from omegaconf import DictConfig, OmegaConf, open_dict

from seqlab.errors import ConfigError
from seqlab.rundir.records import finished
from seqlab.slurm import is_queued, wait_while_queued
from seqlab.sweeps import has_search_workers
from seqlab.sweeps.queue import add_to_record, read_record

log = logging.getLogger(__name__)

BASIC_SWEEPERS = ("ReportingSweeper", "BasicSweeper")


def ranks_mismatch(tasks: int, cfg: DictConfig) -> str | None:
    """Why a job of `tasks` SLURM tasks cannot run `cfg`'s trainer (None when it can): each task is one
    rank, so the trainer must expect devices x num_nodes = tasks (a one-device trainer under two tasks
    would train the whole job twice into one dir)."""
    trainer = cfg.get("trainer") or {}
    devices, nodes = trainer.get("devices", 1), trainer.get("num_nodes", 1) or 1
    if tasks > 1 and isinstance(devices, int) and devices * int(nodes) != tasks:
        return (
            f"SLURM starts {tasks} tasks for this job (hydra.launcher.nodes x tasks_per_node) but "
            f"trainer.devices={devices} x trainer.num_nodes={nodes} ranks: give the trainer the same numbers "
            "(with trainer=ddp or ddp_cpu), or hydra.launcher.tasks_per_node=1"
        )
    return None


class RanksMatchTasks:
    """A job's task, run once the trainer is found to expect as many ranks as SLURM started tasks (the
    launcher checks before submitting; this holds for a job whose allocation differs from its request)."""

    def __init__(self, task_function: TaskFunction) -> None:
        self.task_function = task_function

    def __call__(self, cfg: DictConfig) -> Any:
        problem = ranks_mismatch(int(os.environ.get("SLURM_NTASKS") or 1), cfg)
        if problem:
            raise ConfigError(problem)
        return self.task_function(cfg)


class SlurmLauncher(SubmititSlurmLauncher):
    def __init__(self, wait: bool = True, **params: Any) -> None:
        super().__init__(**params)
        self.wait = wait

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        super().setup(
            hydra_context=hydra_context, task_function=RanksMatchTasks(task_function), config=config
        )

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
        assert self.config is not None
        sweeper = str(self.config.hydra.sweeper.get("_target_", ""))
        workers = has_search_workers(self.config)
        if not self.wait and not sweeper.endswith(BASIC_SWEEPERS) and not workers:
            raise SystemExit(
                f"error: hydra.launcher.wait=false submits the jobs and returns, but the sweeper {sweeper} needs "
                "each job's result before it goes on: leave wait=true (the default) for a search, or give "
                "it workers (hydra.sweeper.n_workers=2), which need nothing from the command that starts them"
            )
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        jobs = [
            (num, list(o), self.job_dir_name(num, list(o)))
            for num, o in enumerate(job_overrides, initial_job_idx)
        ]
        self.refuse_rank_mismatches(jobs)
        to_submit = jobs if self.wait else self.left_to_run(jobs, sweep_dir)
        submitted = self.submit(to_submit) if to_submit else []
        add_to_record(
            sweep_dir,
            {
                name: {"num": num, "slurm_job": str(job.job_id), "overrides": filter_overrides(overrides)}
                | ({"worker": True} if workers else {})
                for (num, overrides, name), job in zip(to_submit, submitted, strict=True)
            },
        )
        if self.wait:
            wait_while_queued([str(job.job_id) for job in submitted])
            return [job.results()[0] for job in submitted]
        ids = ", ".join(f"{num}: {job.job_id}" for (num, _, _), job in zip(to_submit, submitted, strict=True))
        print(f"Submitted {len(submitted)} of {len(jobs)} jobs to SLURM (job: SLURM id) {ids or '-'}")
        print(f"Sweep dir: {sweep_dir}")
        print(f"Not waiting for them: python -m seqlab.summarize {sweep_dir}  shows how each job stands")
        return [JobReturn(overrides=overrides, status=JobStatus.COMPLETED) for _, overrides, _ in jobs]

    def job_dir_name(self, num: int, overrides: list[str]) -> str:
        """The job's dir under the sweep dir: its number, unless hydra.sweep.subdir says otherwise."""
        assert self.config is not None and self.hydra_context is not None
        given = [o.split("=", 1)[1] for o in overrides if o.startswith("hydra.sweep.subdir=")]
        if given:  # e.g. a search's workers: workers/<k>
            return given[-1]
        subdir = OmegaConf.to_container(self.config.hydra.sweep, resolve=False)["subdir"]
        if subdir == "${hydra.job.num}":
            return str(num)
        config = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        with open_dict(config):
            config.hydra.job.num = num
        return str(OmegaConf.select(config, "hydra.sweep.subdir"))

    def refuse_rank_mismatches(self, jobs: list[tuple[int, list[str], str]]) -> None:
        """Before anything is submitted: every job's trainer expects one rank per SLURM task."""
        assert self.config is not None and self.hydra_context is not None
        tasks = int(self.params.get("nodes") or 1) * int(self.params.get("tasks_per_node") or 1)
        if tasks == 1:
            return
        for num, overrides, _ in jobs:
            config = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
            problem = ranks_mismatch(tasks, config)
            if problem:
                raise SystemExit(f"error: job {num}: {problem}; nothing was submitted")

    def left_to_run(
        self, jobs: list[tuple[int, list[str], str]], sweep_dir: Path
    ) -> list[tuple[int, list[str], str]]:
        """The jobs neither done nor still in the queue from an earlier submission, each left out in one line."""
        record, left = read_record(sweep_dir), []
        for num, overrides, name in jobs:
            earlier = record.get(name, {}).get("slurm_job")
            if finished(sweep_dir / name):
                print(f"job {num} is done (metrics.json): not submitted again")
            elif earlier and is_queued(earlier):
                print(f"job {num} is still queued as SLURM job {earlier}: not submitted again")
            else:
                left.append((num, overrides, name))
        return left

    def submit(self, jobs: list[tuple[int, list[str], str]]) -> list[Any]:
        """submitit's SlurmLauncher.launch up to its wait: one job array, each job runs this launcher."""
        import submitit

        assert self.config is not None
        specific_init_keys = {"max_num_timeout"}
        init_params = {"folder": self.params["submitit_folder"]}
        init_params |= {f"{self._EXECUTOR}_{k}": v for k, v in self.params.items() if k in specific_init_keys}
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, **init_params)
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        params = {
            k if k in base else f"{self._EXECUTOR}_{k}": v
            for k, v in self.params.items()
            if k not in specific_init_keys | {"submitit_folder"}
        }
        executor.update_parameters(**params)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
        log.info(f"Submitit '{self._EXECUTOR}' sweep output dir : {sweep_dir}")
        params_per_job = []
        for num, overrides, _ in jobs:
            log.info(f"\t#{num} : {' '.join(filter_overrides(overrides))}")
            params_per_job.append(
                (overrides, "hydra.sweep.dir", num, f"job_id_for_{num}", Singleton.get_state())
            )
        return executor.map_array(self, *zip(*params_per_job, strict=True))
