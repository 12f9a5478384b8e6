"""What several test modules share: seqlab started in a fresh process, its run records read back, and
callbacks that break a run on purpose (loaded by `+callbacks.x._target_=tests.helpers.<name>`)."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import lightning as L
import torch

from seqlab import Encoder, register_encoder
from seqlab.config import CONF_DIR

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted(p.stem for p in Path(CONF_DIR, "experiment").glob("*.yaml"))
TINY_MNIST = ["experiment=mnist_rnn", "data.val_size=40", "data.batch_size=16", "debug=limit"]


def train_cli(overrides: list[str], run_dir: Path, data_dir: Path) -> subprocess.CompletedProcess:
    """`python -m seqlab.train` in a fresh process (so that it can be SIGKILLed), from the repo root."""
    flags = [a for a in overrides if a.startswith("-")]  # e.g. -m: before the overrides, for argparse
    args = [*flags, f"paths.data_dir={data_dir}", f"hydra.run.dir={run_dir}", "print_config=false"]
    args += ["trainer.enable_progress_bar=false", *(a for a in overrides if not a.startswith("-"))]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "seqlab.train", *args], capture_output=True, text=True, cwd=REPO, env=env
    )


def seqlab_cli(
    tool: str, *args: str, cwd: Path = REPO, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`python -m seqlab.<tool>` in a fresh process, in this environment without a user config path
    (`env` adds to it, or sets one)."""
    environ = {**os.environ, "SEQLAB_CONFIG_PATH": "", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", f"seqlab.{tool}", *args], capture_output=True, text=True, cwd=cwd, env=environ
    )


def sweep_command(args: list[str], sweep_dir: Path, data_dir: Path) -> list[str]:
    """`python -m seqlab.train -m` of a quiet sweep into `sweep_dir` (for tests that start it themselves)."""
    cmd = [
        sys.executable,
        "-m",
        "seqlab.train",
        "-m",
        f"paths.data_dir={data_dir}",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    return [*cmd, "print_config=false", "trainer.enable_progress_bar=false", *args]


def sweep_cli(args: list[str], sweep_dir: Path, data_dir: Path) -> subprocess.CompletedProcess:
    return train_cli(["-m", *args, f"hydra.sweep.dir={sweep_dir}"], sweep_dir / "unused_run_dir", data_dir)


def final(metrics: dict) -> dict:
    """A run's metrics without its wall time (what an interrupted and a straight run must share)."""
    return {k: v for k, v in metrics.items() if k != "wall_time_s"}


def metrics_of(run_dir: Path) -> dict:
    return final(json.loads((run_dir / "metrics.json").read_text()))


def read_summary(sweep_dir: Path) -> list[dict[str, str]]:
    with open(sweep_dir / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


class KillAt(L.Callback):
    """SIGKILL this process at the start of a given batch of a given epoch: no handler, no cleanup."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            os.kill(os.getpid(), signal.SIGKILL)


class KillInSave(L.Callback):
    """SIGKILL this process halfway through writing `name` at the end of `epoch`."""

    def __init__(self, epoch: int, name: str = "last.ckpt") -> None:
        self.epoch, self.name = epoch, name

    def setup(self, trainer, pl_module, stage) -> None:
        io = trainer.strategy.checkpoint_io
        save = io.save_checkpoint

        def save_or_die(checkpoint, path, storage_options=None):
            if Path(path).name == self.name and checkpoint["epoch"] == self.epoch:

                def half_then_die(obj, f, *args, **kwargs):
                    f.write(b"PK\x03\x04 half a checkpoint")
                    f.flush()
                    os.kill(os.getpid(), signal.SIGKILL)

                torch.save = half_then_die
            return save(checkpoint, path, storage_options)

        io.save_checkpoint = save_or_die


class PoisonAt(L.Callback):
    """Fill the first parameter with NaN before a given batch: the next loss is not finite."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            with torch.no_grad():
                next(pl_module.parameters()).fill_(float("nan"))


class LossReader(L.Callback):
    """Read every training loss back to the host: the per-step device read test_gpu_path must catch."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        loss.item()


class TrainingBatch(L.Callback):
    """Publishes the index of the training batch under way, from its start until the next batch starts or
    the loop turns to validation or the epoch's end (Lightning logs a step after the callbacks' batch end)."""

    current: int | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        TrainingBatch.current = batch_idx

    def _between_batches(self, *args) -> None:
        TrainingBatch.current = None

    on_validation_start = on_train_epoch_end = on_train_end = _between_batches


class PauseAt(L.Callback):
    """Sleep `seconds` at the start of a given training batch: a run that stays alive while a test acts."""

    def __init__(self, batch: int, seconds: float) -> None:
        self.batch, self.seconds = batch, seconds

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.batch and trainer.current_epoch == 0:
            import time

            time.sleep(self.seconds)


class SignalAt(L.Callback):
    """Send this process `signum` at the start of a given training batch of a given epoch, as a scheduler
    would (SIGTERM before a kill, SIGUSR1 ahead of a time limit); the time goes to `<run dir>/signal_time`.
    With `job`, only in that job of a sweep."""

    def __init__(self, epoch: int, batch: int, signum: int = signal.SIGTERM, job: int | None = None) -> None:
        self.epoch, self.batch, self.signum, self.job = epoch, batch, signum, job

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.job is not None:
            from hydra.core.hydra_config import HydraConfig

            if HydraConfig.get().job.num != self.job:
                return
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            import time

            Path(trainer.default_root_dir, "signal_time").write_text(repr(time.time()))
            os.kill(os.getpid(), self.signum)


class WaitForSignal(L.Callback):
    """On a job's first attempt (no SLURM requeue yet), stop at a given training batch and wait up to
    `seconds` for a stop signal, so that a test can preempt the job there; `<run dir>/waiting` holds the
    SLURM job id meanwhile."""

    def __init__(self, epoch: int, batch: int, seconds: float = 120) -> None:
        self.epoch, self.batch, self.seconds = epoch, batch, seconds

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        import time

        from seqlab.callbacks.preemption import SignalCheckpoint

        first_attempt = int(os.environ.get("SLURM_RESTART_COUNT") or 0) == 0
        if not (first_attempt and trainer.current_epoch == self.epoch and batch_idx == self.batch):
            return
        stopper = next(c for c in trainer.callbacks if isinstance(c, SignalCheckpoint))
        Path(trainer.default_root_dir, "waiting").write_text(os.environ.get("SLURM_JOB_ID", ""))
        end = time.monotonic() + self.seconds
        while stopper.signalled is None and time.monotonic() < end:
            time.sleep(0.1)


class EpochOrders(L.Callback):
    """Record each training epoch's labels in batch order (`EpochOrders.orders`, one list an epoch)."""

    orders: list[list[int]] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        EpochOrders.orders.append([])

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        EpochOrders.orders[-1] += batch[1].flatten().tolist()


class BatchScores(L.Callback):
    """Recompute each training batch's loss and correct count before its step (no dropout: the same
    numbers the step sees); `BatchScores.rows` holds (loss, correct, n) per batch."""

    rows: list[tuple[float, int, int]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        with torch.no_grad():
            logits = pl_module(batch[0], batch[2] if len(batch) > 2 else None)
            loss = torch.nn.functional.cross_entropy(logits, batch[1])
        BatchScores.rows.append((float(loss), int((logits.argmax(-1) == batch[1]).sum()), len(batch[1])))


@register_encoder("mean_so_far")
class MeanSoFarEncoder(Encoder):
    """A user's own cell, as a project outside seqlab would write one: the running mean of a projection,
    registered by name for code that is not installed (an installed package uses an entry point)."""

    def __init__(self, input_dim: int, hidden_dim: int, **unused) -> None:
        super().__init__()
        self.output_dim = hidden_dim
        self.proj = torch.nn.Linear(input_dim, hidden_dim)

    def forward(self, x, mask=None, state=None):
        steps = torch.arange(1, x.size(1) + 1, device=x.device)[None, :, None]
        return torch.tanh(self.proj(x)).cumsum(1) / steps, None


class AllocateTooMuchAt(L.Callback):
    """Ask the allocator for a petabyte at the start of a given training (or validation) batch: a real
    allocator refusal, without using any memory."""

    def __init__(self, batch: int, validation: bool = False) -> None:
        self.batch, self.validation = batch, validation

    def _ask(self, batch_idx: int) -> None:
        if batch_idx == self.batch:
            torch.empty(2**50, dtype=torch.uint8)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not self.validation:
            self._ask(batch_idx)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if self.validation and not trainer.sanity_checking:
            self._ask(batch_idx)


class TrainingObserver(L.Callback):
    """What the precision and compile tests must see happen in training: the dtype of the net's last
    Linear layer's output (`head_dtypes`), and whether the net was compiled when training started."""

    head_dtypes: list[torch.dtype] = []
    compiled: list[bool] = []

    def on_train_start(self, trainer, pl_module) -> None:
        TrainingObserver.compiled.append(getattr(pl_module.net, "_compiled_call_impl", None) is not None)
        head = [m for m in pl_module.net.modules() if isinstance(m, torch.nn.Linear)][-1]
        head.register_forward_hook(
            lambda module, inputs, output: TrainingObserver.head_dtypes.append(output.dtype)
        )


class RankRecord(L.Callback):
    """When fit starts, write `<run dir>/ranks/<global rank>.json`: who started the ranks (Lightning's
    cluster environment, whether it says they are started outside Lightning, how many processes this
    rank's Lightning launcher started), its pid and its SLURM task id."""

    def setup(self, trainer, pl_module, stage) -> None:
        if stage != "fit":
            return
        environment = getattr(trainer.strategy, "cluster_environment", None)
        record = {
            "world_size": trainer.world_size,
            "environment": type(environment).__name__,
            "external": getattr(environment, "creates_processes_externally", None),
            "started": len(getattr(trainer.strategy.launcher, "procs", None) or []),
            "pid": os.getpid(),
            "slurm_procid": os.environ.get("SLURM_PROCID"),
            "host": socket.gethostname(),
        }
        folder = Path(trainer.default_root_dir, "ranks")
        folder.mkdir(exist_ok=True)
        (folder / f"{trainer.global_rank}.json").write_text(json.dumps(record))


class SignalAtHook(L.Callback):
    """Send this process `signum` (SIGKILL included) once, at a named point of a run: the first time a
    Lightning hook is reached in `epoch` (of fitting; the final validation and test outside it). A file
    `signal_sent` in the run dir marks it sent, so the resumed run goes through the same point unharmed.

    Points: sanity (the sanity check), train_batch (a training batch's start), before_validation
    (between an epoch's last batch and its validation), validation_batch, validation_end,
    train_epoch_end, checkpoint_write (inside saving a checkpoint), next_epoch_start, fit_end, final_validation,
    final_test."""

    def __init__(self, point: str, epoch: int = 1, signum: int = signal.SIGTERM) -> None:
        self.point, self.epoch, self.signum = point, epoch, signum

    def _at(self, point: str, trainer, epoch: int | None = None) -> None:
        marker = Path(trainer.default_root_dir, "signal_sent")
        if point != self.point or marker.exists():
            return
        if epoch is not None and epoch != self.epoch:
            return
        marker.write_text(point)
        os.kill(os.getpid(), self.signum)

    def _fitting(self, trainer) -> bool:
        return trainer.state.fn == "fit" and not trainer.sanity_checking

    def on_sanity_check_start(self, trainer, pl_module) -> None:
        self._at("sanity", trainer)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == 1:
            self._at("train_batch", trainer, trainer.current_epoch)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._at("next_epoch_start", trainer, trainer.current_epoch - 1)

    def on_validation_start(self, trainer, pl_module) -> None:
        if self._fitting(trainer):
            self._at("before_validation", trainer, trainer.current_epoch)
        elif trainer.state.fn == "validate":
            self._at("final_validation", trainer)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if self._fitting(trainer) and batch_idx == 0:
            self._at("validation_batch", trainer, trainer.current_epoch)

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._fitting(trainer):
            self._at("validation_end", trainer, trainer.current_epoch)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._at("train_epoch_end", trainer, trainer.current_epoch)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        if self._fitting(trainer):
            self._at("checkpoint_write", trainer, trainer.current_epoch)

    def on_fit_end(self, trainer, pl_module) -> None:
        self._at("fit_end", trainer)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._at("final_test", trainer)


def documented_project(doc: Path) -> tuple[dict[str, str], list[str]]:
    """A doc's project: the code blocks whose info string names a file (```python file=pkg/x.py), as
    path -> text, and the lines of its ```bash run blocks, the commands to run in order."""
    files: dict[str, str] = {}
    commands: list[str] = []
    for info, body in re.findall(r"^```([^\n]*)\n(.*?)^```", doc.read_text(), flags=re.M | re.S):
        words = info.split()
        named = [w.removeprefix("file=") for w in words if w.startswith("file=")]
        if named:
            files[named[0]] = body
        elif words == ["bash", "run"]:
            commands += [line.strip() for line in body.splitlines() if line.strip()]
    return files, commands


class GpuRecord(L.Callback):
    """Write `<run dir>/gpus.json`: the job's CUDA_VISIBLE_DEVICES and when its fit started and ended."""

    def on_fit_start(self, trainer, pl_module) -> None:
        import time

        self.started = time.time()

    def on_fit_end(self, trainer, pl_module) -> None:
        import time

        record = {"gpus": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": self.started, "end": time.time()}
        Path(trainer.default_root_dir, "gpus.json").write_text(json.dumps(record))
