"""A short generated text in TensorBoard's text tab after each validation: how the language model is doing."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger

from seqlab.tools.sample import sample_text


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
