"""IMDB benchmark: text-pipeline timings and what bucketing + packing buy.

Prints: seconds to read, tokenize and build the vocabulary of the training reviews (25,000 in IMDB) (goal < 5 s) and
to encode them; seconds to load the encoded cache (goal < 1 s); training samples/s of the seqlab path with
bucketed, packed batches against fixed-length padding to max_length (goal: 2x or more), and against a
plain PyTorch loop on the same bucketed batches (goal >= 0.95). One process, alternating measurements.

    SEQLAB_DATA_DIR=../shared/data python scripts/bench/bench_imdb.py [--batches 15] [--repeats 8]
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from benchlib import (
    Figures,
    add_common_args,
    add_comparison,
    alternate,
    bench_cfg,
    compare_with_plain,
    header,
    lightning_fit,
    median,
    plain_classifier_eval,
    plain_classifier_loop,
    prepared_datamodule,
    startup_time,
    steady_allocator,
)

from seqlab import build
from seqlab.data import text as text_pipeline
from seqlab.models.registry import cell_spec, encoder_entry


def pipeline_timings(cfg) -> dict[str, float]:
    """Read, vocabulary, encoding of the training reviews; then building and loading the cache."""
    start = time.perf_counter()
    texts, _ = text_pipeline.read_csv(Path(cfg.data.data_dir) / "imdb" / "train.csv")
    read = time.perf_counter()
    vocab = text_pipeline.build_vocab(texts, min_freq=cfg.data.min_freq)
    built = time.perf_counter()
    text_pipeline.encode(texts, vocab, max_length=cfg.data.max_length)
    encoded = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:
        build.instantiate(cfg.data, "data", cache_dir=cache).prepare_data()
        loaded = time.perf_counter()
        build.instantiate(cfg.data, "data", cache_dir=cache).setup()
        done = time.perf_counter()
    return {
        "reviews": len(texts),
        "read_s": read - start,
        "vocab_s": built - read,
        "encode_s": encoded - built,
        "cache_load_s": done - loaded,
        "vocab_size": len(vocab),
    }


PACKED, FIXED = "bucketed + packed", "fixed-length padding"  # the two batchings compared


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="imdb_lstm")
    parser.add_argument("--batches", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=8)
    add_common_args(parser)
    args = parser.parse_args()
    steady_allocator()

    with tempfile.TemporaryDirectory() as out:
        padded = ("data.bucket=false", "data.pad_to_max_length=true")
        setups = {
            PACKED: bench_cfg(args.experiment, args.data_dir, out, "data.bucket=true", *args.overrides),
            FIXED: bench_cfg(args.experiment, args.data_dir, out, *padded, *args.overrides),
        }
        fixed_cfg = setups[FIXED]
        if fixed_cfg.data.max_length is None:  # fixed-length padding needs a length: the default's 400
            fixed_cfg.data.max_length = 400
        cell = fixed_cfg.model.net.get("cell")
        if cell is not None and "pack" in encoder_entry(cell_spec(cell)[0]).settings():
            name, settings = cell_spec(cell)  # recurrent encoders: run over the padding too
            fixed_cfg.model.net.cell = {"name": name, **settings, "pack": False}
        timings = pipeline_timings(setups[PACKED])
        runs = {}
        for name, cfg in setups.items():
            datamodule = prepared_datamodule(cfg)
            batches = [b for _, b in zip(range(args.batches), datamodule.train_dataloader(), strict=False)]
            torch.manual_seed(0)
            net = build.build_task(cfg, datamodule).net
            runs[name] = (cfg, datamodule, batches, copy.deepcopy(net.state_dict()), net)
        cfg, datamodule, batches, init, net = runs[PACKED]
        val = [b for _, b in zip(range(args.batches), datamodule.val_dataloader(), strict=False)]
        val_samples = sum(len(b[1]) for b in val)

        def plain() -> tuple[float, float]:
            trained = copy.deepcopy(net)
            return plain_classifier_loop(trained, batches, cfg), plain_classifier_eval(trained, val, cfg)

        run = compare_with_plain(cfg, datamodule, init, batches, val, plain, args.repeats)
        fits: dict[str, list[float]] = {name: [] for name in runs}  # the seqlab path, both batchings

        def fit(name: str) -> Callable[[], None]:
            cfg, datamodule, batches, init, _ = runs[name]
            return lambda: fits[name].append(lightning_fit(cfg, datamodule, init, batches)[0].loop_s)

        alternate(*(fit(name) for name in runs), repeats=max(2, args.repeats // 2))
    print(header(f"IMDB {args.experiment}: {args.batches} batches"))
    figures = Figures("imdb")
    figures.add(f"read {timings['reviews']:,} training reviews", timings["read_s"], "s")
    figures.add(
        f"tokenize + vocabulary ({timings['vocab_size']} words)",
        timings["vocab_s"],
        "s",
        goal=f"read + vocab {timings['read_s'] + timings['vocab_s']:.2f} s, goal < 5 s",
    )
    figures.add(f"encode {timings['reviews']:,} reviews to ids", timings["encode_s"], "s")
    figures.add("load the encoded cache", timings["cache_load_s"], "s", goal="goal < 1 s")
    samples = {name: sum(len(b[1]) for b in setup[2]) for name, setup in runs.items()}
    rate = {name: samples[name] / median(seconds) for name, seconds in fits.items()}
    add_comparison(figures, f"train throughput ({PACKED})", samples[PACKED], "samples/s", run, "train")
    add_comparison(figures, f"eval throughput ({PACKED})", val_samples, "samples/s", run, "eval")
    figures.add(
        "bucketing speed-up over fixed-length padding",
        rate[PACKED] / rate[FIXED],
        "x",
        goal="goal >= 2x",
    )
    figures.add(
        "start-up to exit, debug=fdr",
        startup_time(args.experiment, args.data_dir, *args.overrides),
        "s",
        goal="goal < 8 s on a CPU, < 15 s on a GPU",
    )
    figures.write(args.json, experiment=args.experiment, batches=args.batches)


if __name__ == "__main__":
    main()
