"""`python -m seqlab.predict ckpt_path=... text="..."` (or `file=`, `out=`): label reviews with a classifier."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from seqlab.cli import launch, run
from seqlab.config import CONF_DIR


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="predict")
def app(cfg: DictConfig) -> None:
    from seqlab.tools.predict import predict_from_checkpoint

    run(predict_from_checkpoint, cfg)


def main() -> None:
    launch(app)


if __name__ == "__main__":
    main()
