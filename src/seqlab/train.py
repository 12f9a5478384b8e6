"""`python -m seqlab.train experiment=...`: compose the config, train, test, write metrics.json."""

from __future__ import annotations

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from seqlab.config import CONF_DIR, print_config
from seqlab.errors import USER_ERRORS


def run(task_function, cfg: DictConfig):
    """Call `task_function(cfg)`; in a single run, a user error (config, data, training) ends with its message alone."""
    try:
        return task_function(cfg)
    except USER_ERRORS as err:
        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # the sweep records this job as failed and goes on
        raise SystemExit(f"error: {err}") from None


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
