"""`python -m seqlab.sample ckpt_path=... prompt="the" num_words=50 strategy=multinomial|greedy|top_k`."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from seqlab.config import CONF_DIR
from seqlab.train import run


def sample(cfg: DictConfig) -> str:
    from seqlab.pipeline import restore_for_tool
    from seqlab.tasks import LanguageModel
    from seqlab.tools.sampling import sample_text

    _, datamodule, task = restore_for_tool(
        cfg,
        "sampling needs a language model checkpoint, e.g. from experiment=ptb_lab",
        lambda task, _: isinstance(task, LanguageModel),
    )
    text = sample_text(
        task.net,
        datamodule.vocab,
        cfg.prompt,
        cfg.num_words,
        cfg.strategy,
        cfg.temperature,
        cfg.top_k,
        cfg.seed,
    )
    print(text)
    if cfg.out:
        Path(cfg.out).write_text(text + "\n")
    return text


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="sample")
def main(cfg: DictConfig) -> None:
    run(sample, cfg)


if __name__ == "__main__":
    main()
