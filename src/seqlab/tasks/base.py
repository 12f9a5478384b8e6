"""What every task shares: binding the optimizer and scheduler configs, and run metadata in checkpoints."""

from __future__ import annotations

import logging
import warnings
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics import Metric

from seqlab.compat import attached_trainer, is_compiled, total_batch_index
from seqlab.optimization import Optimization, describe_groups
from seqlab.seeding import rng_state, set_rng_state

log = logging.getLogger(__name__)


class TaskModule(L.LightningModule):
    """Joins a plain `nn.Module` to a loss, metrics and optimization.

    `optimization` (seqlab.optimization.Optimization: optimizer and scheduler partials, when the scheduler
    steps, clipping, accumulation) is bound to the parameters here. `run_info` (plain data: the composed
    config, data dims, seqlab version) is stored in every checkpoint under "seqlab", so a checkpoint alone
    can rebuild its model.
    """

    def __init__(
        self,
        net: nn.Module,
        *,
        optimization: Optimization | None = None,
        compile: bool = False,
        compile_backend: str = "inductor",
    ) -> None:
        super().__init__()
        self.net = net
        self.compile_net, self.compile_backend = compile, compile_backend  # (nn.Module.compile is a method)
        self.optimization = optimization or Optimization()
        self.run_info: dict[str, Any] = {}
        self.sums_restored_in_epoch: int | None = None  # a mid-epoch resume restored that epoch's sums

    def configure_model(self) -> None:
        """`compile=true`: torch.compile the net in place (its parameter names, so checkpoints, unchanged).

        What dynamo cannot trace runs eagerly between compiled graphs (a graph break), packed sequences
        included (tests/test_gpu_path.py compiles a packed bidirectional LSTM).
        """
        if not self.compile_net or is_compiled(self.net):
            return
        try:
            self.net.compile(backend=self.compile_backend, dynamic=True)
        except Exception as err:  # no compiler toolchain, unsupported platform...
            warnings.warn(
                f"model.compile=true: torch.compile unavailable ({err}); running eagerly", stacklevel=2
            )

    def batch_memory(self, data: Any) -> tuple[int, str, str] | None:
        """The peak bytes of this task's largest batch under the data settings `data`, what that batch is,
        and how to shrink it (`seqlab.resources.check_batches_fit` refuses what cannot fit); None: no estimate."""
        return None

    def configure_optimizers(self) -> Any:
        return self.optimization.configure(self, automatic=self.automatic_optimization)

    def on_fit_start(self) -> None:
        for optimizer in self.trainer.optimizers:  # once a run: what each parameter is trained with
            if self.trainer.is_global_zero:
                log.info(describe_groups(optimizer))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["seqlab"] = self.run_info
        checkpoint["rng_state"] = rng_state()
        checkpoint["epoch_sums"] = self.epoch_sums()

    def count_pending(self) -> None:
        """Fold whatever the training step keeps uncounted into the epoch's sums (a task that defers)."""

    def epoch_sums(self) -> dict[str, Any]:
        """The sums this training epoch's means (train/loss, train/acc...) are made of: the training
        metrics' states (`train*` metrics), `train_*` buffers and `train_count`. A checkpoint written
        mid-epoch keeps them, so the epoch's means over a resume cover all of its batches."""
        self.count_pending()
        sums: dict[str, Any] = {}
        for name, module in self.named_modules():
            if isinstance(module, Metric) and name.rsplit(".", 1)[-1].startswith("train"):
                sums[name] = {
                    k: v.detach().clone() for k, v in module.metric_state.items() if isinstance(v, Tensor)
                }
        for name, buffer in self.named_buffers():
            if name.startswith("train_") and "." not in name:
                sums[name] = buffer.detach().clone()
        if isinstance(getattr(self, "train_count", None), int):
            sums["train_count"] = self.train_count
        return sums

    def restore_epoch_sums(self, sums: dict[str, Any]) -> None:
        for name, value in sums.items():
            if name == "train_count":
                self.train_count = int(value)
            elif isinstance(value, dict):
                metric = self.get_submodule(name)
                for key, state in value.items():
                    setattr(metric, key, state.to(self.device))
                metric._update_count = max(metric._update_count, 1)  # compute() then uses the sums
            else:
                self.get_buffer(name).copy_(value)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Resuming training continues the random streams (shuffling, dropout) where the saved run was,
        # so a resumed run retraces the uninterrupted one; evaluation leaves them alone.
        if (
            "rng_state" in checkpoint
            and attached_trainer(self) is not None
            and self.trainer.state.fn == "fit"
        ):
            set_rng_state(checkpoint["rng_state"])
            if self.trainer.world_size == 1:  # several ranks' sums differ: a checkpoint holds rank 0's
                self.restore_epoch_sums(checkpoint.get("epoch_sums") or {})
                self.sums_restored_in_epoch = checkpoint.get("epoch")

    def log_step(self, name: str, value: Tensor, prog_bar: bool = False) -> None:
        """Log a per-step value every `log_every_n_steps` batches (and on the last step of a stopped
        run), at the optimizer step (`global_step`, as the gradient norms), straight to the loggers.

        Not through `self.log`: once a step has logged a value there, Lightning converts it again on every
        later step of the epoch (scripts/bench/profile_step.py: a 1 x 8 RNN's logging, log_step and Lightning's
        logger connector, fell from 159 to 86 us a step under cProfile without it). Only a progress bar,
        when there is one, gets the value through `self.log`. Epoch means are kept in cheap on-device sums
        instead and logged once an epoch.
        """
        trainer = attached_trainer(self)
        if trainer is None:
            return
        due = (total_batch_index(trainer) + 1) % trainer.log_every_n_steps == 0
        if not (due or trainer.should_stop):
            return
        host = value.detach().float().cpu()  # the one device read of the value
        for logger in trainer.loggers:
            logger.log_metrics({name: host.item()}, step=trainer.global_step)
        if prog_bar and trainer.progress_bar_callback is not None:
            self.log(name, host, on_step=True, on_epoch=False, prog_bar=True, logger=False)


class MeanNLL(Metric):
    """Total NLL / total count over a whole split, reduced across ranks: the exact mean loss (per token,
    whose exp() is the exact perplexity; per example for a classifier's cross-entropy).

    (torchmetrics' MeanMetric either reads a NaN flag back per update, a GPU sync, or with
    nan_strategy="disable" drops the weights, so a split's short last batch would count as a full one.)
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, nll_sum: Tensor, count: int) -> None:
        self.total += nll_sum.detach().double()
        self.count += count

    def compute(self) -> Tensor:
        return (self.total / self.count.clamp(min=1)).float()
