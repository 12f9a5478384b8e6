"""`python -m seqlab.attack ckpt_path=... n=2 targets=3`: adversarial digits for a trained MNIST classifier."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from seqlab.cli import launch, run
from seqlab.config import CONF_DIR


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="attack")
def app(cfg: DictConfig) -> None:
    from seqlab.tools.attack import attack_checkpoint

    run(attack_checkpoint, cfg)


def main() -> None:
    launch(app)


if __name__ == "__main__":
    main()
