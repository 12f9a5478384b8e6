"""`python -m seqlab.sample ckpt_path=... prompt="the" num_words=50 strategy=multinomial|greedy|top_k`."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from seqlab.cli import launch, run
from seqlab.config import CONF_DIR


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="sample")
def app(cfg: DictConfig) -> None:
    from seqlab.tools.sample import sample_from_checkpoint

    run(sample_from_checkpoint, cfg)


def main() -> None:
    launch(app)


if __name__ == "__main__":
    main()
