"""Seconds from a stop signal to the exit of a real training process, with its mid-epoch checkpoint written.

    SEQLAB_DATA_DIR=../shared/data python scripts/bench/stop_signal_time.py [SIGTERM|SIGUSR1|SIGUSR2] [mnist ptb imdb]

Each task trains in a fresh process; after `--after` seconds (start-up, then training under way) the
signal is sent and the time to exit is measured. Prints the exit code, the time and where last.ckpt stands.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

TASKS = {
    "mnist": ["experiment=mnist_lstm", "data.train_subset=null", "trainer.max_epochs=20"],
    "ptb": ["experiment=ptb_zaremba_small"],
    "imdb": ["experiment=imdb_lstm"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("signal", nargs="?", default="SIGTERM", choices=["SIGTERM", "SIGUSR1", "SIGUSR2"])
    parser.add_argument("tasks", nargs="*", default=list(TASKS), help=", ".join(TASKS))
    parser.add_argument("--after", type=float, default=25.0, help="seconds from start to the signal")
    args = parser.parse_args()
    signum = getattr(signal, args.signal)
    for name in args.tasks:
        with tempfile.TemporaryDirectory() as tmp:
            run_dir, log_path = Path(tmp) / name, Path(tmp) / "log.txt"
            with open(log_path, "w") as log:
                process = subprocess.Popen(
                    [sys.executable, "-m", "seqlab.train", *TASKS[name], f"hydra.run.dir={run_dir}"]
                    + ["print_config=false", "trainer.enable_progress_bar=false"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
                time.sleep(args.after)
                start = time.perf_counter()
                process.send_signal(signum)
                code = process.wait()
                seconds = time.perf_counter() - start
            checkpoint = run_dir / "checkpoints" / "last.ckpt"
            where = "missing"
            if checkpoint.is_file():
                state = torch.load(checkpoint, weights_only=False, map_location="cpu")
                done = state["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["completed"]
                where = f"written at batch {done} of epoch {state['epoch']}"
            last = log_path.read_text().strip().splitlines()[-1][:160]
            print(
                f"{name}: exit {code}, {seconds:.2f} s after {args.signal}; last.ckpt {where}; last line: {last}"
            )


if __name__ == "__main__":
    main()
