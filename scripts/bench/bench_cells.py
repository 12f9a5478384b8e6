"""Cell benchmark: training throughput of every cell at T = 784 (pixel MNIST's length) and equal hidden size,
against nn.LSTM (oneDNN's fused kernel). The scan-based cells run both ways, scanned and as their
step-by-step reference loop, so the scan's own gain shows. One training step: forward, backward, Adam;
the cells take turns (rotating order) so that machine noise hits them alike. Goal: the scan-based
cells >= 2x the LSTM's tokens/s.

    python scripts/bench/bench_cells.py [--batch 50] [--hidden 128] [--seq-len 784] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from benchlib import Figures, header, median
from benchlib.timing import alternate

from seqlab.models import SequenceClassifierNet

# (label, cell, scan): the fused cells, IndRNN's elementwise loop, and each scan-based cell both ways
VARIANTS = [
    ("lstm (oneDNN)", "lstm", None),
    ("rnn (oneDNN)", "rnn", None),
    ("gru (oneDNN)", "gru", None),
    ("indrnn (loop)", "indrnn", None),
    ("lru, chunked scan", "lru", "chunked"),
    ("lru, step loop", "lru", "loop"),
    ("mingru, chunked scan", "mingru", "chunked"),
    ("mingru, log-space scan", "mingru", "log"),
    ("mingru, step loop", "mingru", "loop"),
    ("minlstm, chunked scan", "minlstm", "chunked"),
    ("minlstm, step loop", "minlstm", "loop"),
]
SCANNED = ("chunked", "log")


def make_step(cell: str, scan: str | None, args: argparse.Namespace):
    torch.manual_seed(0)
    spec = cell if scan is None else {"name": cell, "scan": scan}  # as the config names it, via the registry
    net = SequenceClassifierNet(10, input_dim=1, cell=spec, hidden_dim=args.hidden, num_layers=1)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.randn(args.batch, args.seq_len, 1, generator=torch.Generator().manual_seed(0))
    y = torch.randint(10, (args.batch,), generator=torch.Generator().manual_seed(1))
    times: list[float] = []

    def step() -> None:
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(x), y).backward()
        optimizer.step()
        times.append(time.perf_counter() - start)

    step()  # warm-up (oneDNN primitives, allocator)
    times.clear()
    return step, times, sum(p.numel() for p in net.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--seq-len", type=int, default=784)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--json", type=Path, help="also write the figures to this file (make bench collects them)"
    )
    args, _ = parser.parse_known_args()  # make bench passes every script the same BENCH_ARGS
    print(header(f"cells: 1 x {args.hidden}, batch {args.batch}, T = {args.seq_len}"))
    steps = {label: make_step(cell, scan, args) for label, cell, scan in VARIANTS}
    alternate(*(step for step, _, _ in steps.values()), repeats=args.repeats)
    tokens = args.batch * args.seq_len
    rate = {label: tokens / median(times) for label, (_, times, _) in steps.items()}
    lstm = rate["lstm (oneDNN)"]
    figures = Figures("cells")
    for label, _, scan in VARIANTS:
        goal = "goal >= 2x the LSTM" if scan in SCANNED else ""
        params = steps[label][2]
        figures.add(
            f"train tokens/s at T={args.seq_len}, {label}, {params:,} params vs lstm",
            rate[label], "tokens/s", plain=lstm, goal=goal,
        )  # fmt: skip
    figures.write(args.json)


if __name__ == "__main__":
    main()
