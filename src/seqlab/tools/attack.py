"""`python -m seqlab.attack`: adversarial examples for a trained digit classifier, a targeted
L1-penalised attack and FGSM.

Both work on images in pixel units ([0, 1]); the data module maps them to the model's inputs, so any
view (rows, pixels, permuted pixels) is attacked in the same image space.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor

Classifier = Callable[[Tensor], Tensor]  # images (N, 28, 28) in [0, 1] -> logits


@dataclass
class AttackResult:
    original: Tensor  # (28, 28)
    adversarial: Tensor  # (28, 28), within [0, 1]
    label: int
    target: int | None  # None: untargeted
    predicted: int
    steps: int

    @property
    def success(self) -> bool:
        return self.predicted == self.target if self.target is not None else self.predicted != self.label

    @property
    def l1(self) -> float:
        return float((self.adversarial - self.original).abs().sum())

    @property
    def linf(self) -> float:
        return float((self.adversarial - self.original).abs().max())


def targeted(
    model: Classifier,
    image: Tensor,
    label: int,
    target: int,
    steps: int = 500,
    lr: float = 0.01,
    l1_weight: float = 0.01,
) -> AttackResult:
    """Adam on a perturbation: cross-entropy towards `target` + `l1_weight` * |delta|_1; stop once `target` wins."""
    delta = torch.zeros_like(image, requires_grad=True)
    optimizer = torch.optim.Adam([delta], lr=lr)
    goal = torch.tensor([target])
    for step in range(1, steps + 1):
        adversarial = (image + delta).clamp(0, 1)
        logits = model(adversarial[None])
        if int(logits.argmax(-1)) == target:
            return AttackResult(image, adversarial.detach(), label, target, target, step - 1)
        loss = F.cross_entropy(logits, goal) + l1_weight * delta.abs().sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    adversarial = (image + delta).clamp(0, 1).detach()
    with torch.no_grad():
        predicted = int(model(adversarial[None]).argmax(-1))
    return AttackResult(image, adversarial, label, target, predicted, steps)


def fgsm(model: Classifier, image: Tensor, label: int, epsilon: float) -> AttackResult:
    """One step of size `epsilon` along the sign of the loss gradient (Goodfellow et al.), clipped to [0, 1]."""
    x = image.clone().requires_grad_(True)
    F.cross_entropy(model(x[None]), torch.tensor([label])).backward()
    adversarial = (image + epsilon * x.grad.sign()).clamp(0, 1).detach()
    with torch.no_grad():
        predicted = int(model(adversarial[None]).argmax(-1))
    return AttackResult(image, adversarial, label, None, predicted, 1)


def summary(results: list[AttackResult]) -> dict[str, float]:
    """Success rate and mean L1 / L-inf size of the perturbations."""
    n = max(len(results), 1)
    return {
        "success_rate": sum(r.success for r in results) / n,
        "mean_l1": sum(r.l1 for r in results) / n,
        "mean_linf": sum(r.linf for r in results) / n,
    }


def attack_checkpoint(cfg: DictConfig) -> dict[str, dict[str, float]]:
    """`python -m seqlab.attack`: targeted (and FGSM) adversarial digits for an MNIST checkpoint."""

    from seqlab.data import MNISTDataModule
    from seqlab.errors import ConfigError
    from seqlab.plots import adversarial_grid
    from seqlab.restore import restore_for_tool
    from seqlab.tasks import SequenceClassifier

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
