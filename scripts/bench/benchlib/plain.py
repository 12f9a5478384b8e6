"""The plain PyTorch loops a user would write, doing the same work as the seqlab path."""

from __future__ import annotations

import time

import torch
from omegaconf import DictConfig

from benchlib.timing import synchronize


def plain_device(cfg: DictConfig) -> torch.device:
    """Where the plain loop runs: the GPU when the seqlab path uses one (trainer=gpu), else the CPU."""
    gpu = cfg.trainer.accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available()
    return torch.device("cuda" if gpu else "cpu")


def to_device(batch: tuple, device: torch.device) -> tuple:
    """Inputs and targets to the device; a mask stays on the host, where packing wants the lengths (as
    seqlab's IMDB data module keeps it)."""
    return (*(t.to(device, non_blocking=True) for t in batch[:2]), *batch[2:])


@torch.no_grad()
def plain_classifier_eval(net: torch.nn.Module, batches: list, cfg: DictConfig) -> float:
    """Seconds for a plain evaluation pass doing seqlab's work: mean loss, accuracy, macro F1, AUROC and
    the confusion matrix, with torchmetrics as a hand-written loop would use them."""
    import torch.nn.functional as F
    from torchmetrics.classification import (
        MulticlassAccuracy,
        MulticlassAUROC,
        MulticlassConfusionMatrix,
        MulticlassF1Score,
    )

    device = plain_device(cfg)
    net.to(device).eval()
    n, fast = net.head.out_features, {"validate_args": False}  # as seqlab's: no per-batch input checks
    metrics = [
        m.to(device)
        for m in (
            MulticlassAccuracy(n, average="micro", **fast),
            MulticlassF1Score(n, **fast),
            MulticlassAUROC(n, **fast),
            MulticlassConfusionMatrix(n, **fast),
        )
    ]
    loss_sum, count = torch.zeros((), dtype=torch.float64, device=device), 0
    start = time.perf_counter()
    for batch in batches:
        batch = to_device(batch, device)
        logits = net(batch[0], batch[2] if len(batch) > 2 else None)
        loss_sum += F.cross_entropy(logits, batch[1], reduction="sum").double()
        count += len(batch[1])
        probs = logits.softmax(-1)
        for metric in metrics:
            metric.update(probs, batch[1])
    results = [loss_sum / count, *(m.compute() for m in metrics)]
    synchronize()
    del results
    return time.perf_counter() - start


def plain_classifier_loop(net: torch.nn.Module, batches: list, cfg: DictConfig) -> float:
    """The plain PyTorch loop a user would write: the experiment's optimizer and clipping, and the epoch's
    mean loss and accuracy kept on the device (as seqlab keeps them), nothing else."""
    import hydra.utils
    import torch.nn.functional as F
    from torchmetrics.classification import MulticlassAccuracy

    device = plain_device(cfg)
    net.to(device).train()
    optimizer = hydra.utils.instantiate(cfg.optimizer)(params=net.parameters())
    clip = cfg.trainer.gradient_clip_val
    accuracy = MulticlassAccuracy(net.head.out_features, average="micro", validate_args=False).to(device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    start = time.perf_counter()
    for batch in batches:  # (inputs, targets) or (inputs, targets, mask)
        batch = to_device(batch, device)
        logits = net(batch[0], batch[2] if len(batch) > 2 else None)
        loss = F.cross_entropy(logits, batch[1])
        accuracy.update(logits.argmax(-1), batch[1])
        loss_sum += loss.detach().double() * len(batch[1])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
        optimizer.step()
    synchronize()
    return time.perf_counter() - start
