#!/usr/bin/env bash
# Tries what the operating system, the allocator and the data can throw at seqlab, on the real data folder,
# and prints the one line each case gives (docs/reliability.md lists the guarantees):
#   SEQLAB_DATA_DIR=../shared/data scripts/cluster/hardening_check.sh
# Needs MNIST and PTB under $SEQLAB_DATA_DIR; the read-only and full-disk cases mount a tmpfs (root).
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
: "${SEQLAB_DATA_DIR:?point SEQLAB_DATA_DIR at the data folder (MNIST/raw, ptb)}"
WORK=$(mktemp -d)
trap 'umount "$WORK"/ro "$WORK"/full "$WORK"/mnist_ro 2>/dev/null; rm -rf "$WORK"' EXIT
SMALL=(experiment=mnist_lstm debug=limit print_config=false trainer.enable_progress_bar=false)
failures=0

expect() {  # name, what the last stderr line must contain, command...
  local name=$1 want=$2
  shift 2
  local line
  line=$("$@" 2>&1 >/dev/null | grep -v '^$' | grep -v HYDRA_FULL_ERROR | tail -1)
  if [[ "$line" == *"$want"* && "$line" != *Traceback* ]]; then echo "ok    $name: $line"
  else echo "FAIL  $name: $line"; failures=$((failures + 1)); fi
}

expect "checksums of the real files" "match" env SEQLAB_DATA_VERIFY=strict XDG_CACHE_HOME="$WORK/cache" "$PY" -c "
from pathlib import Path; import os, sys
from seqlab.data import files, mnist, ptb
d = Path(os.environ['SEQLAB_DATA_DIR'])
files.verify_files(d / 'ptb', ptb.FILES, 'Penn Treebank', 'strict')
files.verify_files(d / 'MNIST' / 'raw', mnist.FILES, 'MNIST', 'strict')
print('MNIST and PTB files match the published md5s', file=sys.stderr)"
echo "a run dir under a file" > "$WORK/file"
expect "run dir under a file" "(ENOTDIR)" "$PY" -m seqlab.train "${SMALL[@]}" "hydra.run.dir=$WORK/file/run"
if mkdir -p "$WORK/ro" "$WORK/full" && mount -t tmpfs -o ro,size=1m tmpfs "$WORK/ro" 2>/dev/null \
   && mount -t tmpfs -o size=200k tmpfs "$WORK/full" 2>/dev/null; then
  expect "read-only run dir" "(EROFS)" "$PY" -m seqlab.train "${SMALL[@]}" "hydra.run.dir=$WORK/ro/run"
  expect "full disk" "(ENOSPC)" "$PY" -m seqlab.train "${SMALL[@]}" "hydra.run.dir=$WORK/full/run"
else
  echo "skip  read-only and full disk: cannot mount a tmpfs here (root needed)"
fi
expect "sweep with a failing job" "job 1 (model.net.hidden_dim=-1): ConfigError" \
  "$PY" -m seqlab.train -m "${SMALL[@]}" model.net.hidden_dim=8,-1 "hydra.sweep.dir=$WORK/sweep"
expect "PTB batch too large for memory" "lower data.batch_size" \
  "$PY" -m seqlab.train experiment=ptb_zaremba_small data.batch_size=20000000 debug=fdr print_config=false \
  "hydra.run.dir=$WORK/ptb"
"$PY" -m seqlab.train "${SMALL[@]}" "hydra.run.dir=$WORK/damaged" >/dev/null 2>&1
rm -f "$WORK/damaged/metrics.json" && echo "half a checkpoint" > "$WORK/damaged/checkpoints/last.ckpt"
resumed=$("$PY" -m seqlab.train "${SMALL[@]}" "hydra.run.dir=$WORK/damaged" resume=true trainer.max_epochs=3 2>&1)
if [[ $? == 0 && -s "$WORK/damaged/metrics.json" && -s "$WORK/damaged/checkpoints/last.ckpt.damaged" ]]; then
  echo "ok    resume past a damaged last.ckpt: $(grep -o 'resume: .*' <<<"$resumed" | head -1)"
else echo "FAIL  resume past a damaged last.ckpt: $(tail -1 <<<"$resumed")"; failures=$((failures + 1)); fi
# last.ckpt gone, an epoch checkpoint intact: resume goes on from it
"$PY" -m seqlab.train "${SMALL[@]}" "hydra.run.dir=$WORK/gone" >/dev/null 2>&1
rm -f "$WORK/gone/metrics.json" "$WORK/gone/checkpoints/last.ckpt"
resumed=$("$PY" -m seqlab.train "${SMALL[@]}" "hydra.run.dir=$WORK/gone" resume=true trainer.max_epochs=3 2>&1)
if [[ $? == 0 && -s "$WORK/gone/metrics.json" ]]; then
  echo "ok    resume with last.ckpt gone: $(grep -o 'resume: .*' <<<"$resumed" | head -1)"
else echo "FAIL  resume with last.ckpt gone: $(tail -1 <<<"$resumed")"; failures=$((failures + 1)); fi
# a refused resume: one line, and the run's records as they were
rm -f "$WORK/gone/metrics.json"
cp "$WORK/gone/.hydra/config.yaml" "$WORK/config.before"
expect "refused resume (another hidden_dim)" "use the model settings the checkpoint was trained with" \
  "$PY" -m seqlab.train "${SMALL[@]}" "hydra.run.dir=$WORK/gone" resume=true model.net.hidden_dim=24 \
  trainer.max_epochs=4
cmp -s "$WORK/config.before" "$WORK/gone/.hydra/config.yaml" && echo "ok    refused resume left .hydra/config.yaml" \
  || { echo "FAIL  refused resume rewrote .hydra/config.yaml"; failures=$((failures + 1)); }
expect "seed out of range" "seed=-1: a seed is an integer" "$PY" -m seqlab.train "${SMALL[@]}" seed=-1 \
  "hydra.run.dir=$WORK/seed"
# a sweep job's metrics.json cut short: named by the summary, the job failed
"$PY" -m seqlab.train -m "${SMALL[@]}" model.net.hidden_dim=8 "hydra.sweep.dir=$WORK/cut" >/dev/null 2>&1
head -c 20 "$WORK/cut/0/metrics.json" > "$WORK/cut/0/m" && mv "$WORK/cut/0/m" "$WORK/cut/0/metrics.json"
"$PY" -m seqlab.summarize "$WORK/cut" >/dev/null 2>&1
if grep -q "metrics.json is damaged" "$WORK/cut/summary.md"; then echo "ok    damaged metrics.json: named in summary.md"
else echo "FAIL  damaged metrics.json not named"; failures=$((failures + 1)); fi
# an IMDB CSV whose unclosed quote would merge two reviews
mkdir -p "$WORK/imdb/imdb" && printf 'text,label\n"good one",1\n"a great film,1\n"bad movie",0\n' > "$WORK/imdb/imdb/train.csv"
cp "$WORK/imdb/imdb/train.csv" "$WORK/imdb/imdb/test.csv"
expect "IMDB CSV with an unclosed quote" "the row starting on line 3: not valid CSV" \
  "$PY" -m seqlab.train experiment=imdb_bag debug=fdr print_config=false "paths.data_dir=$WORK/imdb" \
  "hydra.run.dir=$WORK/imdb_run"
# MNIST with a file missing from a read-only data folder: the missing file is named, not the lock
mkdir -p "$WORK/mnist_ro/MNIST/raw" && cp "$SEQLAB_DATA_DIR"/MNIST/raw/*.gz "$WORK/mnist_ro/MNIST/raw/"
rm "$WORK/mnist_ro/MNIST/raw/t10k-labels-idx1-ubyte.gz"
if mount --bind "$WORK/mnist_ro" "$WORK/mnist_ro" 2>/dev/null && mount -o remount,bind,ro "$WORK/mnist_ro" 2>/dev/null; then
  expect "MNIST file missing, data folder read-only" "t10k-labels-idx1-ubyte" \
    "$PY" -m seqlab.train "${SMALL[@]}" "paths.data_dir=$WORK/mnist_ro" "hydra.run.dir=$WORK/mnist_ro_run"
  umount "$WORK/mnist_ro"
else
  echo "skip  MNIST on a read-only folder: cannot bind-mount here (root needed)"
fi
# A SIGTERM at each point of a run: one line, then resume=true ends with the uninterrupted run's metrics
SIGNALLED=("${SMALL[@]}" trainer.max_epochs=3 trainer.deterministic=true)
OMP_NUM_THREADS=1 "$PY" -m seqlab.train "${SIGNALLED[@]}" "hydra.run.dir=$WORK/straight" >/dev/null 2>&1
for case in sanity train_batch before_validation validation_end train_epoch_end checkpoint_write \
             next_epoch_start final_test train_batch:SIGINT train_batch:SIGHUP; do
  point=${case%%:*} signame=${case#*:}
  [[ $signame == "$case" ]] && signame=SIGTERM
  run="$WORK/signal_${point}_$signame"
  signum=$("$PY" -c "import signal; print(int(signal.$signame))")
  line=$(OMP_NUM_THREADS=1 PYTHONPATH=. "$PY" -m seqlab.train "${SIGNALLED[@]}" "hydra.run.dir=$run" \
    +callbacks.sig._target_=tests.helpers.SignalAtHook "+callbacks.sig.point=$point" \
    "+callbacks.sig.signum=$signum" 2>&1 >/dev/null | grep -v '^$' | tail -1)
  OMP_NUM_THREADS=1 "$PY" -m seqlab.train "${SIGNALLED[@]}" "hydra.run.dir=$run" resume=true >/dev/null 2>&1
  if [[ "$line" == *"stopped by a signal"* ]] && "$PY" - "$WORK/straight" "$run" <<'PYCODE'
import json, sys
a, b = (json.load(open(f"{d}/metrics.json")) for d in sys.argv[1:])
sys.exit(any(abs(a[k] - b[k]) > 1e-6 for k in a if k != "wall_time_s"))
PYCODE
  then echo "ok    $signame at $point: $line; resumed to the same metrics"
  else echo "FAIL  $signame at $point: $line"; failures=$((failures + 1)); fi
done
# history.csv cut short, then resume: kept aside, its whole rows carried over
"$PY" -m seqlab.train "${SMALL[@]}" "hydra.run.dir=$WORK/history" >/dev/null 2>&1
rm -f "$WORK/history/metrics.json" && truncate -s -9 "$WORK/history/history.csv"
line=$("$PY" -m seqlab.train "${SMALL[@]}" "hydra.run.dir=$WORK/history" resume=true trainer.max_epochs=3 2>&1 \
  | grep -o "history.csv: line .*")
if [[ -s "$WORK/history/metrics.json" && -s "$WORK/history/history.csv.damaged" && -n "$line" ]]; then
  echo "ok    history.csv cut short, resume: $line"
else echo "FAIL  history.csv cut short, resume: ${line:-no warning}"; failures=$((failures + 1)); fi
expect "trainer.max_epochs=0" "trainer.max_epochs=0 trains nothing" "$PY" -m seqlab.train "${SMALL[@]}" \
  trainer.max_epochs=0 "hydra.run.dir=$WORK/zero"
expect "eval given an experiment" "takes the model and data from ckpt_path's run" \
  "$PY" -m seqlab.eval "ckpt_path=$WORK/history/checkpoints/last.ckpt" experiment=mnist_lstm
head -c 40960 /dev/urandom > "$WORK/photo.jpg"
expect "predict on a binary file" "is not text" "$PY" -m seqlab.predict "ckpt_path=$WORK/any.ckpt" "file=$WORK/photo.jpg"
echo "$failures case(s) failed"
exit $((failures > 0))
