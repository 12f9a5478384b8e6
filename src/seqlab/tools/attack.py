"""Adversarial examples for a trained digit classifier: a targeted L1-penalised attack and FGSM.

Both work on images in pixel units ([0, 1]); the data module maps them to the model's inputs, so any
view (rows, pixels, permuted pixels) is attacked in the same image space.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
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
