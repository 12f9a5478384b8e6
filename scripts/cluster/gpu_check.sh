#!/usr/bin/env bash
# One command for a lent GPU (at most ~8 minutes of device time): the three benchmarks at their GPU
# experiments on short windows, the debug=fdr start-up, bf16-mixed on PTB and torch.compile on MNIST;
# one JSON + markdown report in $OUT (default gpu_check/).
#   scripts/cluster/gpu_check.sh [--dry-run] [--data-dir DIR] [--out DIR]
# --dry-run runs the same steps on the CPU with tiny windows, to test the script before device time is spent.
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
DATA=${SEQLAB_DATA_DIR:-data}
OUT=gpu_check
DRY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --data-dir) DATA=$2; shift ;;
    --out) OUT=$2; shift ;;
    *) echo "usage: $0 [--dry-run] [--data-dir DIR] [--out DIR]" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$OUT"
if [ "$DRY" = 1 ]; then
  DEVICE=(trainer=cpu); SHORT=(--batches 2 --repeats 1); EXTRA=(data.val_size=40)
  MNIST=mnist_lstm; PTB=ptb_lab; IMDB=imdb_bag; IMDB_EXTRA=(data.min_freq=1)
else
  DEVICE=(trainer=gpu); SHORT=(--batches 20 --repeats 5); EXTRA=()
  MNIST=mnist_lstm_best; PTB=ptb_zaremba_medium; IMDB=imdb_best; IMDB_EXTRA=()
fi
status=0
step() {  # name, command...: run it, note its exit status and seconds in $OUT/steps.jsonl
  local name=$1; shift
  local start=$SECONDS
  echo "== $name: $*"
  "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  [ $rc = 0 ] || { status=1; tail -5 "$OUT/$name.log"; }
  printf '{"step": "%s", "rc": %d, "seconds": %d}\n' "$name" "$rc" "$((SECONDS - start))" >> "$OUT/steps.jsonl"
}
rm -f "$OUT/steps.jsonl"
step bench_mnist "$PY" scripts/bench/bench_mnist.py --experiment "$MNIST" --data-dir "$DATA" --json "$OUT/bench_mnist.json" "${SHORT[@]}" "${DEVICE[@]}" "${EXTRA[@]}"
step bench_ptb "$PY" scripts/bench/bench_ptb.py --experiment "$PTB" --data-dir "$DATA" --json "$OUT/bench_ptb.json" "${SHORT[@]}" "${DEVICE[@]}"
step bench_imdb "$PY" scripts/bench/bench_imdb.py --experiment "$IMDB" --data-dir "$DATA" --json "$OUT/bench_imdb.json" "${SHORT[@]}" "${DEVICE[@]}" "${EXTRA[@]}" "${IMDB_EXTRA[@]}"
train() {  # name, overrides...: a short real run through the CLI
  local name=$1; shift
  step "$name" env SEQLAB_DATA_DIR="$DATA" "$PY" -m seqlab.train "${DEVICE[@]}" debug=limit print_config=false \
    trainer.enable_progress_bar=false "hydra.run.dir=$OUT/runs/$name" "$@"
}
train startup_fdr "experiment=$MNIST" debug=fdr "${EXTRA[@]}"
train bf16_ptb "experiment=$PTB" trainer.precision=bf16-mixed
train compile_mnist "experiment=$MNIST" model.compile=true "${EXTRA[@]}"
"$PY" scripts/bench/report_bench.py "$OUT" > "$OUT/report_bench.log" 2>&1 || status=1
"$PY" - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]
report = {"steps": steps, "benchmarks": json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else None}
(out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
lines = ["# GPU check", "", "| step | exit | seconds |", "|---|---|---|"]
lines += [f"| {s['step']} | {s['rc']} | {s['seconds']} |" for s in steps]
bench = out / "results.md"
if bench.exists():
    lines += ["", bench.read_text()]
(out / "gpu_check.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines[:4 + len(steps)]))
PY
echo "report: $OUT/gpu_check.md and $OUT/gpu_check.json"
exit $status
