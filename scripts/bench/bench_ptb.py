"""Penn Treebank benchmark: the seqlab LanguageModel (manual-optimization TBPTT) against a plain PyTorch loop.

Same model, same initial weights, same windows, one process, alternating measurements. Prints training
tokens/s of both and the ratio (goal >= 0.95), evaluation tokens/s of both, and the peak memory of
training on a 350-step window with truncated_bptt_steps=35 against null (whole-window backpropagation).

    SEQLAB_DATA_DIR=../shared/data python scripts/bench/bench_ptb.py [--batches 15] [--repeats 16]
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F
from benchlib import (
    Figures,
    add_common_args,
    add_comparison,
    bench_cfg,
    compare_with_plain,
    header,
    lightning_fit,
    peak_rss_mb,
    plain_device,
    prepared_datamodule,
    startup_time,
    steady_allocator,
    to_device,
)

from seqlab import build
from seqlab.models.language_model import detach_state


def plain_tbptt(net, batches, lr: float, clip: float, k: int, per_batch: bool, device: torch.device) -> float:
    """The pytorch/examples loop: carry the state, detach it per chunk, SGD with clipping."""
    net.to(device).train()
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    state, total = None, torch.zeros((), device=device)
    start = time.perf_counter()
    for batch in batches:
        x, y = to_device(batch, device)
        for s in range(0, x.size(1), k):
            inputs, targets = x[:, s : s + k], y[:, s : s + k]
            state = detach_state(state)
            logits, state = net(inputs, state)
            loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum")
            loss = loss / (targets.size(0) if per_batch else targets.numel())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
            optimizer.step()
            total += loss.detach()  # a running loss on the device, as seqlab keeps one
    float(total)
    return time.perf_counter() - start


@torch.no_grad()
def plain_eval(net, batches, device: torch.device) -> float:
    net.to(device).eval()
    state, total, start = None, torch.zeros((), dtype=torch.float64, device=device), time.perf_counter()
    for batch in batches:
        x, y = to_device(batch, device)
        logits, state = net(x, state)
        total += F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").double()
    float(total)  # the perplexity needs the total NLL
    return time.perf_counter() - start


def memory_probe(experiment: str, data_dir: str, tbptt: str, window: int, batches: int) -> dict:
    """Run in a child process: peak RSS (and CUDA memory) of training `batches` windows of `window` steps."""
    with tempfile.TemporaryDirectory() as out:
        cfg = bench_cfg(
            experiment,
            data_dir,
            out,
            f"data.seq_len={window}",
            f"model.truncated_bptt_steps={tbptt}",
        )
        datamodule = prepared_datamodule(cfg)
        data = [b for _, b in zip(range(batches), datamodule.train_dataloader(), strict=False)]
        init = build.build_task(cfg, datamodule).net.state_dict()
        base = peak_rss_mb()
        lightning_fit(cfg, datamodule, init, data)
        result = {"peak_rss_mb": peak_rss_mb(), "rss_growth_mb": peak_rss_mb() - base}
        if torch.cuda.is_available():
            result["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="ptb_zaremba_small")
    parser.add_argument("--batches", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=16)
    add_common_args(parser)
    parser.add_argument(
        "--memory-probe", nargs=3, metavar=("TBPTT", "WINDOW", "BATCHES"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.memory_probe:
        tbptt, window, n = args.memory_probe
        print(json.dumps(memory_probe(args.experiment, args.data_dir, tbptt, int(window), int(n))))
        return
    steady_allocator()

    with tempfile.TemporaryDirectory() as out:
        cfg = bench_cfg(args.experiment, args.data_dir, out, *args.overrides)
        start = time.perf_counter()
        datamodule = prepared_datamodule(cfg)
        load_s = time.perf_counter() - start
        batches = [b for _, b in zip(range(args.batches), datamodule.train_dataloader(), strict=False)]
        val = [b for _, b in zip(range(2 * args.batches), datamodule.val_dataloader(), strict=False)]
        tokens, val_tokens = sum(y.numel() for _, y in batches), sum(y.numel() for _, y in val)
        torch.manual_seed(0)
        template = build.build_task(cfg, datamodule).net
        init_state = copy.deepcopy(template.state_dict())
        k = cfg.model.truncated_bptt_steps or cfg.data.seq_len
        device = plain_device(cfg)
        loop_args = (
            cfg.optimizer.lr,
            cfg.trainer.gradient_clip_val,
            k,
            cfg.model.loss_scale != "token_mean",
            device,
        )
        plain_tbptt(copy.deepcopy(template), batches[:10], *loop_args)  # warm-up

        def plain() -> tuple[float, float]:
            train_s = plain_tbptt(copy.deepcopy(template), batches, *loop_args)
            return train_s, plain_eval(copy.deepcopy(template), val, device)

        run = compare_with_plain(cfg, datamodule, init_state, batches, val, plain, args.repeats)

    print(
        header(f"PTB {args.experiment}: {len(batches)} windows of {cfg.data.batch_size} x {cfg.data.seq_len}")
    )
    figures = Figures("ptb")
    add_comparison(figures, "train throughput", tokens, "tokens/s", run, "train")
    add_comparison(
        figures,
        f"eval throughput ({len(val)} windows of the valid stream)",
        val_tokens,
        "tokens/s",
        run,
        "eval",
    )
    figures.add("load + vocabulary + batchify", load_s, "s")
    for tbptt in ("35", "null"):
        probe = subprocess.run(
            [sys.executable, __file__, "--experiment", args.experiment, "--data-dir", args.data_dir]
            + ["--memory-probe", tbptt, "350", "3"],
            check=True,
            capture_output=True,
            text=True,
        )
        result = json.loads(probe.stdout.strip().splitlines()[-1])
        figures.add(
            f"peak RSS, {args.experiment}, 350-step window, tbptt={tbptt}", result["peak_rss_mb"], "MB"
        )
        if "cuda_peak_mb" in result:
            figures.add(f"peak CUDA memory, 350-step window, tbptt={tbptt}", result["cuda_peak_mb"], "MB")
    figures.add(
        "start-up to exit, debug=fdr",
        startup_time(args.experiment, args.data_dir, *args.overrides),
        "s",
        goal="goal < 8 s on a CPU, < 15 s on a GPU",
    )
    figures.write(args.json, experiment=args.experiment, windows=len(batches))


if __name__ == "__main__":
    main()
