"""What a run shows while it trains, and what guards it: gradient norms of chosen parameters (how vanishing
and exploding gradients show in TensorBoard), a short generated text after each validation (how a
language model is doing), a stop on a non-finite training loss before it reaches a checkpoint, and an
Optuna trial's pruning from its validation metric."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from fnmatch import fnmatch
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from seqlab.errors import TrainingError, check_positive
from seqlab.rundir.records import last_checkpoint
from seqlab.tools.sample import sample_text


class GradNormMonitor(L.Callback):
    """Logs `grad_norm/<param>/l1` and `/l2` every `every_n_steps` optimizer steps, before clipping.

    `params` are glob patterns over parameter names; the default picks every recurrent layer-0 input
    and hidden-to-hidden weight. The first step's values are also printed to the console.
    """

    def __init__(
        self,
        every_n_steps: int = 50,
        params: tuple[str, ...] | list[str] = ("*weight_ih_l0", "*weight_hh_l0"),
    ) -> None:
        check_positive(every_n_steps=every_n_steps)
        self.every_n_steps, self.params = every_n_steps, tuple(params)
        self._printed = False

    def norms(self, module: torch.nn.Module) -> dict[str, torch.Tensor]:
        out = {}
        for name, p in module.named_parameters():
            if p.grad is not None and any(fnmatch(name, pattern) for pattern in self.params):
                g = p.grad.detach()
                out[f"grad_norm/{name}/l1"] = g.abs().sum()
                out[f"grad_norm/{name}/l2"] = g.norm()
        return out

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        first = not self._printed
        if trainer.global_step % self.every_n_steps and not first:
            return
        values = self.norms(pl_module)
        if not values:
            if first:  # a cell whose parameters have other names (the default globs name nn.RNN's)
                self._printed = True
                names = [n for n, p in pl_module.named_parameters() if p.requires_grad]
                shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
                rank_zero_warn(
                    f"callbacks.grad_norm.params={list(self.params)} matches no parameter of this model "
                    f"({shown}): no gradient norms are logged; name yours, e.g. "
                    "'callbacks.grad_norm.params=[\"*encoder.layers.0.*\"]', or set callbacks.grad_norm=null"
                )
            return
        # Straight to the loggers: every_n_steps, not the Trainer's log_every_n_steps, sets the cadence.
        floats = {k: v.item() for k, v in values.items()}
        for logger in trainer.loggers:
            logger.log_metrics(floats, step=trainer.global_step)
        if first:
            self._printed = True
            lines = "\n".join(f"  {k.removeprefix('grad_norm/'):<40} {v:.4e}" for k, v in floats.items())
            rank_zero_info(f"Gradient norms at the first step:\n{lines}")


class TextSampleLogger(L.Callback):
    def __init__(
        self,
        prompt: str = "the",
        num_words: int = 30,
        strategy: str = "multinomial",
        temperature: float = 1.0,
        seed: int = 0,
    ) -> None:
        self.prompt, self.num_words, self.strategy = prompt, num_words, strategy
        self.temperature, self.seed = temperature, seed

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        vocab = getattr(trainer.datamodule, "vocab", None)
        writers = [lg.experiment for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
        if trainer.sanity_checking or vocab is None or not writers or not trainer.is_global_zero:
            return
        text = sample_text(
            pl_module.net,
            vocab,
            prompt=self.prompt,
            num_words=self.num_words,
            strategy=self.strategy,
            temperature=self.temperature,
            seed=self.seed,
        )
        for writer in writers:  # two trailing spaces: a Markdown line break
            writer.add_text("sample", text.replace("\n", "  \n"), trainer.global_step)


class NonFiniteLossGuard(L.Callback):
    """Raise a `TrainingError` naming epoch, step and batch of the first NaN or infinite training loss.

    Reading a loss back each step would stall an accelerator, so the finiteness flags stay where the loss
    is and are read every `every_n_steps` batches, at each epoch end and before every validation (hence
    before every checkpoint): the error still names the first bad batch, no checkpoint ever holds its
    weights, and a CPU run takes the same path as a GPU one.
    """

    def __init__(self, every_n_steps: int = 50) -> None:
        check_positive(every_n_steps=every_n_steps)
        self.every_n_steps = every_n_steps
        self._pending: list[tuple[int, int, int, torch.Tensor]] = []  # epoch, step, batch, loss

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if not isinstance(loss, torch.Tensor):
            return
        # Only a reference per step: the losses are checked all at once when read.
        self._pending.append((trainer.current_epoch, trainer.global_step, batch_idx, loss.detach()))
        if len(self._pending) >= self.every_n_steps:
            self.check(trainer)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check(trainer)

    def check(self, trainer: L.Trainer) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        losses = torch.stack([loss for *_, loss in pending]).float()  # scalar losses, one dtype per run
        finite = torch.isfinite(losses).cpu()  # one read for all pending steps
        if bool(finite.all()):
            return
        first = int((~finite).nonzero()[0])
        epoch, step, batch_idx, _ = pending[first]
        loss = losses[first]
        last = last_checkpoint(trainer.default_root_dir)
        kept = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was saved yet"
        raise TrainingError(
            f"non-finite training loss ({loss.item()}) at epoch {epoch}, step {step}, batch {batch_idx}; "
            f"{kept}. Lower optimizer.lr, clip gradients (trainer.gradient_clip_val=...), or find the "
            "operation with debug=anomaly."
        )


_current_trial: Any = None  # the Optuna trial whose job runs in this process


@contextlib.contextmanager
def trial_of_this_process(trial: Any) -> Iterator[None]:
    """Set by the Optuna sweeper around a trial's job, which runs in its process: OptunaPruning reports to it."""
    global _current_trial
    _current_trial = trial
    try:
        yield
    finally:
        _current_trial = None


class OptunaPruning(L.Callback):
    """Report `monitor` to the running Optuna trial after each validation; raise TrialPruned when told to."""

    def __init__(self, monitor: str) -> None:
        self.monitor = monitor

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trial = _current_trial
        if trial is None or trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        import optuna

        epoch = trainer.current_epoch
        trial.report(float(trainer.callback_metrics[self.monitor]), step=epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(
                f"pruned at epoch {epoch}: {self.monitor} did not keep up with earlier trials"
            )
