"""`python -m seqlab.attack ckpt_path=... n=2 targets=3`: adversarial digits for a trained MNIST classifier."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from seqlab.config import CONF_DIR
from seqlab.train import run


def attack(cfg: DictConfig) -> dict[str, dict[str, float]]:
    import torch

    from seqlab.data import MNISTDataModule
    from seqlab.errors import ConfigError
    from seqlab.pipeline import restore_for_tool
    from seqlab.plots import adversarial_grid
    from seqlab.tasks import SequenceClassifier
    from seqlab.tools.attack import fgsm, summary, targeted

    if cfg.n <= 0 or not 0 <= cfg.targets <= 9:
        raise ConfigError(f"n={cfg.n} must be positive and targets={cfg.targets} within 0..9")
    torch.manual_seed(cfg.seed)
    _, datamodule, task = restore_for_tool(
        cfg,
        "attacks need a digit classifier checkpoint, e.g. from experiment=mnist_lstm",
        lambda task, dm: isinstance(task, SequenceClassifier) and isinstance(dm, MNISTDataModule),
    )
    task.eval()
    datamodule.setup("test")
    inputs, labels = datamodule.test_set.tensors
    model = lambda images: task(datamodule.inputs(images))  # noqa: E731
    with torch.no_grad():
        correct = (task(inputs[:1000]).argmax(-1) == labels[:1000]).nonzero().flatten()[: cfg.n].tolist()
    images = datamodule.pixels(inputs[correct])
    aimed, plain = [], []
    for image, label in zip(images, labels[correct].tolist(), strict=True):
        for k in range(1, cfg.targets + 1):
            aimed.append(targeted(model, image, label, (label + k) % 10, cfg.steps, cfg.lr, cfg.l1_weight))
        if cfg.epsilon is not None:
            plain.append(fgsm(model, image, label, cfg.epsilon))
    report = {"targeted": summary(aimed)}
    if plain:
        report[f"fgsm_eps{cfg.epsilon}"] = summary(plain)
    for name, values in report.items():
        print(f"{name}: " + ", ".join(f"{k} {v:.4f}" for k, v in values.items()))
    for r in aimed:
        verdict = (
            f"reached in {r.steps} steps"
            if r.success
            else f"FAILED after {r.steps} steps (predicts {r.predicted})"
        )
        print(f"  digit {r.label} -> {r.target}: {verdict}, L1 {r.l1:.2f}, Linf {r.linf:.3f}")
    if cfg.out:
        rows = [
            (
                r.original,
                r.adversarial,
                f"true {r.label}",
                f"{'target ' + str(r.target) if r.target is not None else 'FGSM'}: predicts {r.predicted}",
            )
            for r in aimed + plain
        ]
        adversarial_grid(rows).savefig(cfg.out)
        print(f"grid written to {cfg.out}")
    return report


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="attack")
def main(cfg: DictConfig) -> None:
    run(attack, cfg)


if __name__ == "__main__":
    main()
