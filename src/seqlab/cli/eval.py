"""`python -m seqlab.eval ckpt_path=...`: test a checkpoint with the model and data it was trained with."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from seqlab.cli import run
from seqlab.config import CONF_DIR


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="eval")
def main(cfg: DictConfig) -> None:
    from seqlab import pipeline

    run(pipeline.evaluate, cfg)


if __name__ == "__main__":
    main()
