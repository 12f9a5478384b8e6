#!/usr/bin/env bash
# results/long_memory.md: every cell on the adding problem (T = 200, 1000) and copy memory (T = 100, 500),
# each job one thread and an equal wall-clock budget per setting (SHORT for the short settings, LONG for
# the long ones), then the table. About 6 x (2 x SHORT + 2 x LONG) minutes:
#   bash scripts/results/long_memory_table.sh            # SHORT=00:00:02:00 LONG=00:00:06:00 by default
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
SHORT=${SHORT:-00:00:02:00}
LONG=${LONG:-00:00:06:00}
export OMP_NUM_THREADS=1  # one core a job: the budget means the same whatever else the machine runs
run() { "$PY" -m seqlab.train -m sweep=long_memory_cells "experiment=$1" "data.seq_len=$2" \
  "trainer.max_time=$3" trainer.max_steps=-1 logger=csv >/dev/null || echo "a job of $1 T=$2 failed"; }
run adding 1000 "$LONG"
run copy_memory 500 "$LONG"
run adding 200 "$SHORT"
run copy_memory 100 "$SHORT"
"$PY" scripts/results/long_memory_table.py
