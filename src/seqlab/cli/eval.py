"""`python -m seqlab.eval ckpt_path=...`: test a checkpoint with the model and data it was trained with."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from seqlab.cli import launch, run
from seqlab.config import CONF_DIR


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="eval")
def app(cfg: DictConfig) -> None:
    from seqlab import pipeline

    run(pipeline.evaluate, cfg)


def main() -> None:
    launch(app)


if __name__ == "__main__":
    main()
