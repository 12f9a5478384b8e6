#!/usr/bin/env bash
# The short search behind results/long_memory.md's solved rows: each candidate (cell and settings) trains
# CANDIDATE_TIME on the long setting (adding T = 1000, copy T = 500), one at a time on two threads; the
# one with the lowest val/loss per problem then trains FINAL_TIME. Runs land in outputs/long_memory_search/.
#   bash scripts/results/long_memory_search.sh candidates adding/A1 adding/A2 ...  # the search, 5 min each
#   bash scripts/results/long_memory_search.sh final adding A1 copy_memory C2   # the chosen ones, 30 min each
#   python scripts/results/long_memory_table.py --search outputs/long_memory_search
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
CANDIDATE_TIME=${CANDIDATE_TIME:-00:00:05:00}
FINAL_TIME=${FINAL_TIME:-00:00:30:00}
export OMP_NUM_THREADS=2
declare -A CANDIDATES=(
  [adding/A1]="model.net.cell={name:lru,r_min:0.99,r_max:0.9999,max_phase:0.01}"
  [adding/A2]="model.net.cell={name:mingru,forget_bias:5.0}"
  [adding/A3]="model.net.cell={name:mingru,forget_bias:5.0} data.curriculum=[100,100,300,300]"
  [adding/A4]="model.net.cell={name:lru,r_min:0.99,r_max:0.9999,max_phase:0.01} data.curriculum=[100,100,300,300]"
  [copy_memory/C1]="model.net.cell=lru"
  [copy_memory/C2]="model.net.cell={name:lru,r_min:0.99,r_max:0.9999}"
  [copy_memory/C3]="model.net.cell={name:lru,r_min:0.99,r_max:0.9999} data.curriculum=[100,100,300,300]"
)
T() { [ "$1" = adding ] && echo 1000 || echo 500; }
train() {  # problem, candidate, budget, stage
  local problem=$1 name=$2 budget=$3 stage=$4
  # shellcheck disable=SC2086
  "$PY" -m seqlab.train "experiment=$problem" "data.seq_len=$(T "$problem")" ${CANDIDATES[$problem/$name]} \
    "trainer.max_time=$budget" trainer.max_steps=-1 logger=csv print_config=false \
    trainer.enable_progress_bar=false "hydra.run.dir=outputs/long_memory_search/$stage/${problem}_T$(T "$problem")/$name" \
    || echo "$stage $problem $name failed"
}
case "${1:-candidates}" in
  candidates)
    for key in "${@:2}"; do
      train "${key%/*}" "${key#*/}" "$CANDIDATE_TIME" candidates
    done ;;
  final)
    shift
    while [ $# -ge 2 ]; do train "$1" "$2" "$FINAL_TIME" final; shift 2; done ;;
  *) echo "usage: $0 candidates | final <problem> <candidate> [...]" >&2; exit 2 ;;
esac
