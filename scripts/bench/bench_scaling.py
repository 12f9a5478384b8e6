"""PTB training throughput against batch size and hidden size: how the cost of a step grows with the model.

The seqlab training path (ptb_zaremba_small's 2-layer LSTM, TBPTT 35, windows of 35) for every
batch size x hidden size, a few windows each after one warm-up window.

    SEQLAB_DATA_DIR=../shared/data python scripts/bench/bench_scaling.py [--batch-sizes 20 64 256] [--hidden 200 650 1500]
"""

from __future__ import annotations

import argparse
import copy
import tempfile

import torch
from benchlib import (
    Figures,
    add_common_args,
    bench_cfg,
    header,
    lightning_fit,
    prepared_datamodule,
    steady_allocator,
)

from seqlab import build


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="ptb_zaremba_small")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[20, 64, 256])
    parser.add_argument("--hidden", type=int, nargs="+", default=[200, 650, 1500])
    parser.add_argument("--windows", type=int, default=3)
    add_common_args(parser)
    args = parser.parse_args()
    steady_allocator()
    print(header(f"PTB scaling, {args.experiment}: {args.windows} windows per setting"))
    figures = Figures("ptb_scaling")
    table = {}
    with tempfile.TemporaryDirectory() as out:
        for hidden in args.hidden:
            for batch_size in args.batch_sizes:
                cfg = bench_cfg(
                    args.experiment,
                    args.data_dir,
                    out,
                    f"data.batch_size={batch_size}",
                    f"model.net.hidden_dim={hidden}",
                    f"model.net.embed_dim={hidden}",
                    *args.overrides,
                )
                datamodule = prepared_datamodule(cfg)
                batches = [
                    b for _, b in zip(range(args.windows + 1), datamodule.train_dataloader(), strict=False)
                ]
                torch.manual_seed(0)
                init = copy.deepcopy(build.build_task(cfg, datamodule).net.state_dict())
                lightning_fit(cfg, datamodule, init, batches[:1])  # warm-up
                timing, _ = lightning_fit(cfg, datamodule, init, batches[1:])
                tokens = sum(y.numel() for _, y in batches[1:])
                table[(hidden, batch_size)] = tokens / timing.loop_s
                figures.add(f"train, hidden {hidden}, batch {batch_size}", tokens / timing.loop_s, "tokens/s")
    figures.write(args.json, hidden=args.hidden, batch_sizes=args.batch_sizes)
    print("\n| hidden / batch | " + " | ".join(map(str, args.batch_sizes)) + " |")
    print("|---|" + "---|" * len(args.batch_sizes))
    for hidden in args.hidden:
        print(f"| {hidden} | " + " | ".join(f"{table[(hidden, b)]:,.0f}" for b in args.batch_sizes) + " |")


if __name__ == "__main__":
    main()
