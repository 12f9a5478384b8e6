"""`python -m seqlab.embeddings ckpt_path=... words=[army,taxpayer] metric=cosine k=10`."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from seqlab.cli import launch, run
from seqlab.config import CONF_DIR


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="embeddings")
def app(cfg: DictConfig) -> None:
    from seqlab.tools.embeddings import report_embeddings

    run(report_embeddings, cfg)


def main() -> None:
    launch(app)


if __name__ == "__main__":
    main()
