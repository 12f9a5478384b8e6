"""DDP inside a Hydra sweep: one job's ranks at a time, the next job starting clean."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import open_dict, read_write


@contextlib.contextmanager
def distributed_job() -> Iterator[None]:
    """Run one job's DDP work so that the next job of a sweep, in the same process, starts clean.

    Inside a multirun, Lightning's DDP launcher would start the other ranks with this process's
    command line, i.e. the whole sweep again: for the length of the job the command line becomes
    this job's own overrides and `hydra.run.dir` its output dir. Afterwards the process group is
    destroyed and the environment variables Lightning set (LOCAL_RANK, MASTER_PORT...) are removed,
    or the next job would take itself for a child rank of this one.
    """
    environ = dict(os.environ)
    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    if multirun:
        hydra_cfg = HydraConfig.get()
        argv, run_dir = sys.argv, hydra_cfg.run.dir
        sys.argv = [argv[0], *hydra_cfg.overrides.task]
        with open_dict(hydra_cfg), read_write(hydra_cfg):
            hydra_cfg.run.dir = hydra_cfg.runtime.output_dir
    try:
        yield
    finally:
        if multirun:
            sys.argv = argv
            with open_dict(hydra_cfg), read_write(hydra_cfg):
                hydra_cfg.run.dir = run_dir
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()
            os.environ.clear()
            os.environ.update(environ)
