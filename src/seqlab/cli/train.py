"""`python -m seqlab.train experiment=...`: compose the config, train, test, write metrics.json."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from seqlab.cli import run
from seqlab.config import CONF_DIR, print_config


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    from seqlab import pipeline  # heavy imports after Hydra has parsed the command line

    if cfg.get("print_config", True):
        print_config(
            cfg, ("data", "model", "optimizer", "scheduler", "trainer", "callbacks", "logger", "paths")
        )
    return run(lambda c: pipeline.train(c)[0], cfg)


if __name__ == "__main__":
    main()
