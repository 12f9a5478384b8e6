"""`python -m seqlab.train experiment=...`: compose the config, train, test, write metrics.json."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from seqlab.cli import launch, run
from seqlab.config import CONF_DIR, print_config


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def train_app(cfg: DictConfig) -> float | None:
    from seqlab import pipeline  # heavy imports after Hydra has parsed the command line

    if cfg.get("print_config", True):
        print_config(
            cfg, ("data", "model", "optimizer", "scheduler", "trainer", "callbacks", "logger", "paths")
        )
    return run(lambda c: pipeline.train(c)[0], cfg)


def main() -> None:
    # `sweep` is a group of the defaults list, chosen as `sweep=<name>`; command lines written as
    # `+sweep=<name>` keep working.
    sys.argv = [arg.replace("+sweep=", "sweep=", 1) if arg.startswith("+sweep=") else arg for arg in sys.argv]
    launch(train_app)


if __name__ == "__main__":
    main()
