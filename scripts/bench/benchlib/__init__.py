"""Shared code of the benchmark scripts (scripts/bench/bench_*.py), by concern: `timing` (the harness),
`seqlab_path` (the runs under test), `plain` (the reference loops), `bare` (a bare LightningModule), `report` (figures and probes)."""

from benchlib.bare import BareClassifier, bare_lightning_fit
from benchlib.plain import plain_classifier_eval, plain_classifier_loop, plain_device, to_device
from benchlib.report import CONTROL, RATIO_GOAL, Figures, add_comparison, device_name, header, peak_rss_mb
from benchlib.seqlab_path import (
    DEFAULT_DATA_DIR,
    add_common_args,
    bench_cfg,
    compare_with_plain,
    lightning_fit,
    lightning_validate,
    prepared_datamodule,
    serving,
    startup_time,
)
from benchlib.timing import (
    Comparison,
    LoopTimer,
    Timing,
    alternate,
    median,
    paired_ratio,
    steady_allocator,
    synchronize,
)

__all__ = [
    "BareClassifier",
    "bare_lightning_fit",
    "Comparison",
    "LoopTimer",
    "Timing",
    "alternate",
    "median",
    "paired_ratio",
    "steady_allocator",
    "synchronize",
    "DEFAULT_DATA_DIR",
    "add_common_args",
    "bench_cfg",
    "compare_with_plain",
    "lightning_fit",
    "lightning_validate",
    "prepared_datamodule",
    "serving",
    "startup_time",
    "plain_classifier_eval",
    "plain_classifier_loop",
    "plain_device",
    "to_device",
    "CONTROL",
    "Figures",
    "RATIO_GOAL",
    "add_comparison",
    "device_name",
    "header",
    "peak_rss_mb",
]
