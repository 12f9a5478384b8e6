"""`python -m seqlab.sample ckpt_path=... prompt="the" num_words=50 strategy=multinomial|greedy|top_k`."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from seqlab.config import CONF_DIR
from seqlab.errors import ConfigError
from seqlab.train import run


def sample(cfg: DictConfig) -> str:
    from seqlab.pipeline import restore_from_checkpoint
    from seqlab.tasks import LanguageModel
    from seqlab.tools.sampling import sample_text

    run_cfg, datamodule, task = restore_from_checkpoint(cfg.ckpt_path)
    if not isinstance(task, LanguageModel):
        raise ConfigError(
            f"ckpt_path={cfg.ckpt_path!r} holds a {type(task).__name__} ({run_cfg.get('task_name')}); "
            "sampling needs a language model checkpoint, e.g. from experiment=ptb_lab"
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
