"""Language modelling with truncated backpropagation through time (the Lightning 2 manual-optimization recipe)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from seqlab.compat import attached_trainer
from seqlab.errors import (
    ConfigError,
    check_choice,
    check_positive_or_null,
    check_probability,
)
from seqlab.models.language_model import LanguageModelNet, detach_state, move_state, summed_nll
from seqlab.models.recurrent import State
from seqlab.tasks.base import MeanNLL, TaskModule

LOSS_SCALES = ("token_mean", "sum_time_mean_batch")


class LanguageModel(TaskModule):
    """Next-word prediction over contiguous streams, the hidden state carried from batch to batch.

    Each training window is cut into chunks of `truncated_bptt_steps` steps (null: the whole window);
    per chunk: forward, backward, clip, step, with the state detached between chunks, carried across
    batches and reset at each epoch start. `loss_scale` picks the published recipes' loss:
    `token_mean` (pytorch/examples) or `sum_time_mean_batch` (Zaremba et al.). With
    `teacher_forcing_ratio` < 1 each input is the true previous word with that probability and the
    model's own previous prediction otherwise (0.0: free running), across chunk and batch boundaries too.
    Evaluation is always teacher-forced. Lightning applies neither clipping nor accumulation under manual
    optimization, so the task does both, as `optimization` says (from `trainer.*`): the gradient norm is
    clipped after the callbacks' `on_before_optimizer_step` has seen it, and accumulation counts chunks
    (an epoch's remainder is stepped on at its last batch).
    """

    def __init__(
        self,
        net: LanguageModelNet,
        truncated_bptt_steps: int | None = 35,
        loss_scale: str = "token_mean",
        teacher_forcing_ratio: float = 1.0,
        **options: Any,
    ) -> None:
        """`options`: TaskModule's (optimization, compile)."""
        super().__init__(net, **options)
        check_positive_or_null(truncated_bptt_steps=truncated_bptt_steps)
        check_choice("loss_scale", loss_scale, LOSS_SCALES)
        check_probability(teacher_forcing_ratio, "teacher_forcing_ratio")
        self.automatic_optimization = False
        self.truncated_bptt_steps, self.loss_scale = truncated_bptt_steps, loss_scale
        self.teacher_forcing_ratio = teacher_forcing_ratio
        self.train_nll, self.val_nll, self.test_nll = MeanNLL(), MeanNLL(), MeanNLL()
        self.train_state: State | None = None
        self.eval_state: State | None = None
        self.last_prediction: Tensor | None = None  # free running: the input that follows the last chunk
        self._carry: dict | None = None  # the state a mid-epoch checkpoint carried
        self._pending_chunks = 0

    def forward(self, ids: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        return self.net(ids, state)

    def batch_memory(self, data: Any) -> tuple[int, str, str] | None:
        """Per token of the largest batch: the logits over the vocabulary three times (logits,
        log-probabilities, their gradient) and a dozen float32 activations per hidden unit and layer."""
        vocab_size = self.run_info.get("dims", {}).get("vocab_size")
        if "seq_len" not in data or vocab_size is None:
            return None
        net = self.run_info.get("config", {}).get("model", {}).get("net", {})
        tokens = max(int(data.batch_size), int(data.get("eval_batch_size") or 0)) * int(data.seq_len)
        hidden = int(net.get("hidden_dim", 0)) * int(net.get("num_layers", 1))
        batch = f"data.batch_size={data.batch_size} x data.seq_len={data.seq_len} tokens a batch"
        return (
            tokens * 4 * (3 * vocab_size + 12 * hidden),
            f"{batch} (logits over {vocab_size} words)",
            "lower data.batch_size (or data.eval_batch_size, data.seq_len)",
        )

    def setup(self, stage: str) -> None:
        window = getattr(self.trainer.datamodule, "seq_len", None) if self.trainer.datamodule else None
        if stage == "fit" and self.truncated_bptt_steps and window and self.truncated_bptt_steps > window:
            raise ConfigError(
                f"model.truncated_bptt_steps={self.truncated_bptt_steps} is larger than the window "
                f"data.seq_len={window}; use at most {window}, or null for the whole window"
            )

    def forward_chunk(self, x: Tensor, state: State | None) -> tuple[Tensor, State]:
        """Teacher-forced in one fused call, or step by step when inputs may be the model's own predictions.

        The model's own prediction carries over from the previous chunk and batch (the streams go on), so
        only an epoch's first input is always the true word.
        """
        if self.teacher_forcing_ratio >= 1.0 or not self.training:
            return self.net(x, state)
        steps = []
        own = self.last_prediction
        for t in range(x.size(1)):
            inputs = x[:, t]
            if own is not None and own.shape == inputs.shape:
                truth = torch.rand(x.size(0), device=x.device) < self.teacher_forcing_ratio
                inputs = torch.where(truth, inputs, own)
            logits, state = self.net(inputs[:, None], state)
            own = logits[:, -1].detach().argmax(-1)
            steps.append(logits)
        self.last_prediction = own
        return torch.cat(steps, dim=1), state

    def chunk_loss(self, logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """(loss to optimise, summed NLL) for one chunk."""
        return self.scaled_loss(summed_nll(logits, targets), targets)

    def scaled_loss(self, nll_sum: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        divisor = targets.numel() if self.loss_scale == "token_mean" else targets.size(0)
        return nll_sum / divisor, nll_sum

    def chunk_step(
        self, inputs: Tensor, targets: Tensor, state: State | None
    ) -> tuple[Tensor, Tensor, State]:
        """(loss, summed NLL, state) of one chunk. Teacher-forced, a LanguageModelNet scores the targets
        alone (the adaptive softmax then skips the clusters no target is in); otherwise through logits."""
        if isinstance(self.net, LanguageModelNet) and (
            self.teacher_forcing_ratio >= 1.0 or not self.training
        ):
            nll_sum, state = self.net.target_nll(inputs, targets, state)
            return (*self.scaled_loss(nll_sum, targets), state)
        logits, state = self.forward_chunk(inputs, state)
        return (*self.chunk_loss(logits, targets), state)

    def on_train_start(self) -> None:
        # Resumed mid-epoch (Lightning then skips on_train_epoch_start): the streams go on where they were.
        carry, self._carry = self._carry, None
        if carry is not None and carry["epoch"] == self.trainer.current_epoch:
            self.train_state = move_state(carry["state"], self.device)
            self.last_prediction = move_state(carry["last_prediction"], self.device)

    def on_train_epoch_start(self) -> None:
        self.train_state, self.last_prediction = None, None
        self._pending_chunks = 0
        self.optimizers().zero_grad(set_to_none=True)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.train_state is not None and attached_trainer(self) is not None and self.trainer.training:
            # The streams go on after a mid-epoch checkpoint: so does the hidden state.
            checkpoint["language_model_carry"] = {
                "epoch": self.trainer.current_epoch,
                "state": move_state(detach_state(self.train_state), "cpu"),
                "last_prediction": move_state(self.last_prediction, "cpu"),
            }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        self._carry = checkpoint.get("language_model_carry")

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Lightning runs the callbacks' hook first: gradient norms are logged before this clip, as with
        # automatic optimization.
        if self.optimization.gradient_clip_val:
            self.clip_gradients(optimizer, self.optimization.gradient_clip_val, "norm")

    def _optimizer_step(self) -> None:
        optimizer = self.optimizers()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        self._pending_chunks = 0
        if self.optimization.interval == "step":
            self._step_scheduler()

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        k = self.truncated_bptt_steps or x.size(1)
        total = x.new_zeros((), dtype=torch.float)
        for start in range(0, x.size(1), k):
            inputs, targets = x[:, start : start + k], y[:, start : start + k]
            self.train_state = detach_state(self.train_state)
            loss, nll_sum, self.train_state = self.chunk_step(inputs, targets, self.train_state)
            if self.train_state is None:
                raise ConfigError(
                    f"model.net.cell: {type(self.net.encoder).__name__} returns no state, and the language "
                    "model carries it across TBPTT windows; use a cell that returns one (seqlab's own all do)"
                )
            self.manual_backward(loss / self.optimization.accumulate_grad_batches)
            self._pending_chunks += 1
            if self._pending_chunks == self.optimization.accumulate_grad_batches:
                self._optimizer_step()
            self.train_nll.update(nll_sum, targets.numel())
            total += nll_sum.detach()
        if self._pending_chunks and batch_idx == self.trainer.num_training_batches - 1:
            self._optimizer_step()  # the epoch's last chunks, fewer than accumulate_grad_batches (as Lightning)
        self.log_step("train/loss_step", total / y.numel(), prog_bar=True)
        return total

    def on_train_epoch_end(self) -> None:
        loss = self.train_nll.compute()
        self.log_dict({"train/loss": loss, "train/ppl": loss.exp()}, sync_dist=True)  # already reduced: no-op
        self.train_nll.reset()
        if self.optimization.interval == "epoch":
            self._step_scheduler()

    def _step_scheduler(self) -> None:
        scheduler = self.lr_schedulers()
        if scheduler is None:
            return
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            val_loss = self.trainer.callback_metrics.get(self.optimization.monitor)
            if val_loss is not None:
                scheduler.step(val_loss)
        else:
            scheduler.step()

    def _eval_step(self, batch: tuple[Tensor, Tensor], metric: MeanNLL) -> None:
        x, y = batch
        _, nll_sum, self.eval_state = self.chunk_step(x, y, self.eval_state)
        metric.update(nll_sum, y.numel())

    def _eval_epoch_end(self, stage: str, metric: MeanNLL) -> None:
        loss = metric.compute()
        self.log(f"{stage}/loss", loss, sync_dist=True)  # MeanNLL is reduced across ranks already
        self.log(f"{stage}/ppl", loss.exp(), prog_bar=True, sync_dist=True)
        metric.reset()

    def on_validation_epoch_start(self) -> None:
        self.eval_state = None

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, self.val_nll)

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val", self.val_nll)

    def on_test_epoch_start(self) -> None:
        self.eval_state = None

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, self.test_nll)

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test", self.test_nll)
