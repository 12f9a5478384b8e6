"""`hydra/launcher=parallel`: a sweep's jobs run `n_jobs` at a time on this machine, each in a process of
its own with its share of the cores (docs/sweeps-and-clusters.md#parallel-sweeps-on-one-machine).

Each job is forked from the sweep's process (nothing re-imported or pickled on the way in). Unlike Hydra's
joblib launcher (a loky worker killed by the kernel ends the pool with every running job) and submitit's
local executor (all jobs at once), a job that dies fails alone; unlike both, a stop signal sent to the
sweep reaches every running job (SIGINT as SIGTERM, so that it checkpoints; a third signal kills), and no
new job starts. Jobs have their own process groups (a terminal's Ctrl-C reaches them once, through the
sweep) and die with the sweep's process (Linux). Claims, `error.json`, summaries and the failed-jobs
report work as with the basic launcher; a job's console output goes to `<job dir>/console.log`.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import pickle
import shutil
import signal
import sys
import tempfile
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from seqlab.compat import clear_exit_handlers, failed_job, job_error, run_exit_handlers, with_return_value
from seqlab.sweeps import has_search_workers

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


class JobProcessEnded(RuntimeError):
    """A job's process ended without a result: killed (out of memory, SIGKILL), or it exited."""


@dataclass
class Running:
    num: int
    overrides: list[str]
    result: Path
    started: float
    gpus: list[str] = field(default_factory=list)


class StopSignals:
    """While the jobs run: a stop signal sent to the sweep is passed to every running job."""

    def __init__(self, running: dict[int, Running]) -> None:
        self.running = running
        self.signum: int | None = None
        self.count = 0
        self.interrupted: set[int] = set()  # the jobs running when a signal came
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        for signum in STOP_SIGNALS:
            with contextlib.suppress(ValueError):  # not the main thread: signals are not ours to take
                self.previous[signum] = signal.signal(signum, self.handle)
        return self

    def handle(self, signum: int, frame: Any) -> None:
        self.signum = self.signum or signum
        self.count += 1
        # SIGINT would end a job without a checkpoint (KeyboardInterrupt); SIGTERM checkpoints it. A third
        # signal is someone who will not wait for the checkpoints: the jobs are killed.
        passed = signal.SIGTERM if signum == signal.SIGINT else signum
        passed = signal.SIGKILL if self.count >= 3 else passed
        self.interrupted.update(job.num for job in self.running.values())
        for pid in list(self.running):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, passed)

    def __exit__(self, *exc: Any) -> None:
        for signum, previous in self.previous.items():
            signal.signal(signum, previous)


class ParallelLauncher(Launcher):
    def __init__(self, n_jobs: int | None = None) -> None:
        self.n_jobs = n_jobs
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
        assert self.config is not None
        sweeper = str(self.config.hydra.sweeper.get("_target_", ""))
        if not sweeper.endswith(("ReportingSweeper", "BasicSweeper")) and not has_search_workers(self.config):
            raise SystemExit(
                f"error: hydra/launcher=parallel runs a sweep's jobs side by side, but {sweeper} asks for one "
                "trial at a time and prunes it in its own process: leave the launcher at its default, or "
                "give the search workers (hydra.sweeper.n_workers=2)"
            )
        from seqlab.resources import available_cores, gpu_groups, plan, visible_gpus  # torch: not for --help

        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        cores = available_cores()
        gpus = visible_gpus(self.config)
        devices = OmegaConf.select(self.config, "trainer.devices", default=1)
        free = deque(
            gpu_groups(self.n_jobs, gpus, devices if isinstance(devices, int) else 1) if gpus else []
        )
        n_jobs = len(free) if free and self.n_jobs is None else self.n_jobs
        at_once, threads = plan(n_jobs, len(job_overrides), cores)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        on_gpus = f", each on its own GPU(s) of {','.join(gpus)}" if free else ""
        log.info(
            f"Launching {len(job_overrides)} jobs, {at_once} at a time, {threads} torch threads each{on_gpus}"
        )
        todo = deque((num, list(o)) for num, o in enumerate(job_overrides, initial_job_idx))
        running: dict[int, Running] = {}
        results: dict[int, JobReturn] = {}
        results_dir = Path(tempfile.mkdtemp(prefix="seqlab-parallel-"))
        try:
            with StopSignals(running) as stop:
                while todo or running:
                    while todo and len(running) < at_once and stop.signum is None:
                        num, overrides = todo.popleft()
                        given = free.popleft() if free else []
                        pid = self.start(num, overrides, threads, results_dir / f"{num}.pkl", given)
                        running[pid] = Running(
                            num, overrides, results_dir / f"{num}.pkl", time.monotonic(), given
                        )
                        log.info(f"\t#{num} : {' '.join(filter_overrides(overrides))}")
                    if not running:
                        break
                    free.extend(self.collect(running, results))
        finally:
            shutil.rmtree(results_dir, ignore_errors=True)
        if stop.signum is not None:
            unfinished = [n for n in sorted(stop.interrupted) if results[n].status != JobStatus.COMPLETED]
            self.stopped(stop.signum, unfinished, [num for num, _ in todo], sweep_dir)
        return [results[num] for num in range(initial_job_idx, initial_job_idx + len(job_overrides))]

    def collect(self, running: dict[int, Running], results: dict[int, JobReturn]) -> list[list[str]]:
        """Wait for one or more jobs to end (polling our own children only: waitpid(-1) would also reap
        processes other code started and waits for) and read their results; the GPUs they free."""
        while True:
            ended = [(pid, status) for pid in list(running) if (status := waited(pid)) is not None]
            if ended:
                break
            time.sleep(0.1)
        ended_jobs = []
        for pid, status in ended:
            job = running.pop(pid)
            ended_jobs.append(job)
            results[job.num] = read_result(job, status)
            ret, seconds = results[job.num], time.monotonic() - job.started
            if ret.status == JobStatus.COMPLETED:
                log.info(f"\t#{job.num} done in {seconds:.0f} s")
            else:
                error = job_error(ret)
                log.info(f"\t#{job.num} failed after {seconds:.0f} s: {type(error).__name__}: {error}")
        return [running_job.gpus for running_job in ended_jobs if running_job.gpus]

    def start(self, num: int, overrides: list[str], threads: int, result: Path, gpus: list[str]) -> int:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid:
            return pid
        code = 1
        try:  # the job's process: whatever happens, it must never return into the sweep's loop
            if gpus:  # before anything in the job can initialise CUDA
                os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
            code = self.run_in_child(num, overrides, threads, result)
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)

    def run_in_child(self, num: int, overrides: list[str], threads: int, result: Path) -> int:
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        os.setpgid(0, 0)
        end_with_parent()
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        clear_exit_handlers()  # the sweep's exit handlers are not the job's
        config = job_config(self.hydra_context, self.config, overrides, num)
        job_dir = Path(str(config.hydra.sweep.dir)) / str(OmegaConf.select(config, "hydra.sweep.subdir"))
        job_dir.mkdir(parents=True, exist_ok=True)
        console = os.open(job_dir / "console.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(console, 1)
        os.dup2(console, 2)
        share_cores(config, threads)
        try:
            ret = run_job(
                hydra_context=self.hydra_context,
                task_function=self.task_function,
                config=config,
                job_dir_key="hydra.sweep.dir",
                job_subdir_key="hydra.sweep.subdir",
            )
        except BaseException as ended:  # a SystemExit (a stop signal's, a refused claim), a KeyboardInterrupt
            message = str(ended.code if isinstance(ended, SystemExit) else ended) or type(ended).__name__
            error = JobProcessEnded(message.removeprefix("error: "))
            ret = failed_job(overrides, error)
        run_exit_handlers()  # the job's own: trackers, claims
        write_result(ret, result)
        return 0

    def stopped(self, signum: int, stopped: list[int], not_started: list[int], sweep_dir: Path) -> None:
        """After a stop signal: rewrite the summary, then end the sweep in one line."""
        from seqlab.sweeps.summary import summarize

        with contextlib.suppress(OSError):
            summarize(sweep_dir)
        parts = [f"job{'s' * (len(stopped) > 1)} {', '.join(map(str, stopped))} stopped" if stopped else ""]
        parts.append(f"{len(not_started)} not started" if not_started else "")
        what = "; ".join(p for p in parts if p) or "all jobs had ended"
        raise SystemExit(
            f"error: the sweep was stopped by {signal.Signals(signum).name} ({what}): the same command with "
            f"resume=true continues it; see {sweep_dir / 'summary.md'}"
        )


def waited(pid: int) -> int | None:
    """The wait status of our child `pid` once it has ended, else None."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return 0
    return status if done else None


def job_config(
    hydra_context: HydraContext, sweep_config: DictConfig, overrides: list[str], num: int
) -> DictConfig:
    """Job `num`'s config: the sweep's with the job's overrides, numbered as Hydra numbers its jobs."""
    config = hydra_context.config_loader.load_sweep_config(sweep_config, overrides)
    with open_dict(config):
        config.hydra.job.id = num
        config.hydra.job.num = num
    return config


def end_with_parent() -> None:
    """Linux: the kernel sends this process SIGTERM when the sweep's process dies, even by SIGKILL, so a
    job never outlives its sweep unseen; the job checkpoints and stops as on any SIGTERM."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG


def share_cores(config: DictConfig, threads: int) -> None:
    """This job's share of the cores: torch threads now, thread variables for the processes it starts
    (a DDP job's ranks), and data loader workers capped in its config."""
    import torch

    torch.set_num_threads(threads)
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[variable] = str(threads)
    workers = OmegaConf.select(config, "data.num_workers", default=None)
    if isinstance(workers, int) and workers > threads:
        with read_write(config), open_dict(config):
            config.data.num_workers = threads
        print(
            f"data.num_workers={workers} lowered to {threads}, this job's share of the cores", file=sys.stderr
        )


def write_result(ret: JobReturn, path: Path) -> None:
    try:
        data = pickle.dumps(ret)
    except Exception:  # an error or a return value that does not pickle: its words do
        error = job_error(ret)
        stand_in = (
            JobProcessEnded(f"{type(error).__name__}: {error}") if ret.status == JobStatus.FAILED else None
        )
        data = pickle.dumps(with_return_value(ret, stand_in, cfg=None, hydra_cfg=None))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def read_result(job: Running, status: int) -> JobReturn:
    if job.result.is_file():
        try:
            return pickle.loads(job.result.read_bytes())
        except Exception as err:
            error = JobProcessEnded(f"its result could not be read back ({type(err).__name__}: {err})")
    elif os.WIFSIGNALED(status):
        name = signal.Signals(os.WTERMSIG(status)).name
        error = JobProcessEnded(f"its process was killed by {name} (out of memory?); see its console.log")
    else:
        error = JobProcessEnded(f"its process exited with code {os.waitstatus_to_exitcode(status)}")
    return failed_job(job.overrides, error)
