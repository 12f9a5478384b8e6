"""The language model with AWD-LSTM's training (Merity et al. 2017): activation regularisation (AR) and
temporal activation regularisation (TAR), the learning rate scaled to each window's length, and NT-ASGD
with its averaged weights evaluated and checkpointed."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from seqlab.compat import attached_trainer
from seqlab.models.recurrent import State
from seqlab.optimization import NTASGD
from seqlab.tasks.language_model import LanguageModel

RAW_WEIGHTS = "ntasgd_raw_weights"  # checkpoint key: the iterates, when the averages were swapped in


class AWDLanguageModel(LanguageModel):
    """`LanguageModel` plus: `ar_alpha` * mean(dropped last-layer output^2) and `tar_beta` * mean((h_t -
    h_{t-1})^2) of its raw output added to the training loss (the net must offer `with_activations`, as
    `AWDLanguageModelNet`); with `scale_lr_to_window`, each step's learning rate times the window's
    length over `data.seq_len` (variable-length windows: `data.variable_length=true`); with the `ntasgd`
    optimizer, the averaging triggered from the validation losses, and validation, checkpoints and the
    final test on the averaged weights (resume continues from the iterates, the averages in the
    optimizer's state)."""

    def __init__(
        self,
        net: Any,
        ar_alpha: float = 2.0,
        tar_beta: float = 1.0,
        scale_lr_to_window: bool = True,
        **options: Any,
    ) -> None:
        super().__init__(net, **options)
        if ar_alpha < 0 or tar_beta < 0:
            raise ValueError(f"ar_alpha={ar_alpha} and tar_beta={tar_beta} must be >= 0")
        self.ar_alpha, self.tar_beta, self.scale_lr_to_window = ar_alpha, tar_beta, scale_lr_to_window
        self._activations: tuple[Tensor, Tensor] | None = None
        self._window = None
        self._swapped = False

    def forward_chunk(self, x: Tensor, state: State | None) -> tuple[Tensor, State]:
        if not self.training or not (self.ar_alpha or self.tar_beta):
            return super().forward_chunk(x, state)
        logits, state, self._activations = self.net(x, state, with_activations=True)
        return logits, state

    def chunk_loss(self, logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        loss, nll_sum = super().chunk_loss(logits, targets)
        if self._activations is not None:
            raw, dropped = self._activations
            self._activations = None
            loss = loss + self.ar_alpha * dropped.pow(2).mean()
            if raw.size(1) > 1:
                loss = loss + self.tar_beta * (raw[:, 1:] - raw[:, :-1]).pow(2).mean()
        return loss, nll_sum

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        self._window = batch[0].size(1)
        return super().training_step(batch, batch_idx)

    def _optimizer_step(self) -> None:
        mean = getattr(self.trainer.datamodule, "seq_len", None)
        if not (self.scale_lr_to_window and mean and self._window and self._window != mean):
            return super()._optimizer_step()
        groups = self.optimizers().optimizer.param_groups
        rates = [g["lr"] for g in groups]
        for group in groups:
            group["lr"] *= self._window / mean
        try:
            super()._optimizer_step()
        finally:
            for group, lr in zip(groups, rates, strict=True):
                group["lr"] = lr

    # NT-ASGD: the trigger reads each validation loss; validation runs on the averaged weights.
    def _ntasgd(self) -> NTASGD | None:
        if attached_trainer(self) is None or self.trainer.state.fn != "fit" or not self.trainer.optimizers:
            return None
        optimizer = self.trainer.optimizers[0]
        return optimizer if isinstance(optimizer, NTASGD) else None

    def on_validation_epoch_start(self) -> None:
        super().on_validation_epoch_start()
        optimizer = self._ntasgd()
        if optimizer is not None and optimizer.averaging and not self._swapped:
            optimizer.swap_average()
            self._swapped = True

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        optimizer = self._ntasgd()
        val_loss = self.trainer.callback_metrics.get("val/loss")
        if optimizer is not None and not self.trainer.sanity_checking and optimizer.observe(float(val_loss)):
            self.print(f"NT-ASGD: averaging from epoch {self.current_epoch} on")

    def on_validation_end(self) -> None:
        # After the checkpoint callbacks (they run first): the checkpoints hold the averaged weights.
        if self._swapped:
            self._ntasgd().swap_average()
            self._swapped = False

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        optimizer = self._ntasgd()
        if not self._swapped and (optimizer is None or not optimizer.averaging):
            return
        # Once NT-ASGD averages, every checkpoint keeps the averages as its weights (what evaluation reads),
        # the iterates beside them (what training goes on from) and the optimizer's averages in its state.
        # Saved during validation the model holds the averages and the optimizer's state the iterates;
        # saved elsewhere (last.ckpt at the epoch's end, a stop signal) it is the other way round. The
        # optimizer's state holds live tensors: copied.
        states = checkpoint["optimizer_states"][0]["state"]
        raw = {}
        for index, (name, _) in enumerate(self.named_parameters()):  # the optimizer's order
            if "average" not in states.get(index, {}):
                continue
            model, optimizer_held = checkpoint["state_dict"][name], states[index]["average"]
            average, iterate = (model, optimizer_held) if self._swapped else (optimizer_held, model)
            raw[name] = iterate.detach().clone()
            checkpoint["state_dict"][name] = average.detach().clone()
            states[index] = {**states[index], "average": average.detach().clone()}
        checkpoint[RAW_WEIGHTS] = raw

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        raw = checkpoint.get(RAW_WEIGHTS)
        if raw and attached_trainer(self) is not None and self.trainer.state.fn == "fit":
            # Training goes on from the iterates (Lightning loads the state dict after this hook).
            checkpoint["state_dict"].update(raw)

    def on_fit_end(self) -> None:
        # The final weights of a run are its averages (what the best checkpoint holds too).
        optimizer = self._ntasgd()
        if optimizer is not None and optimizer.averaging and not self._swapped:
            optimizer.swap_average()
