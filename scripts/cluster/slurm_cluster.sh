#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the slow cluster tests (tests/test_slurm*.py):
#   scripts/cluster/slurm_cluster.sh start | stop | status
# Needs root and Debian's slurm-wlm and munge packages (apt-get install slurm-wlm munge). State, spool
# and logs live under $SEQLAB_SLURM_DIR (default /tmp/seqlab-slurm); `stop` ends the daemons.
set -euo pipefail
DIR=${SEQLAB_SLURM_DIR:-/tmp/seqlab-slurm}
HOST=$(hostname -s)
# At least 2 CPUs: the DDP test runs one job of 2 tasks (1 CPU each). On a 1-CPU machine they share it;
# SlurmdParameters=config_overrides below makes slurmd take the configured count over the hardware's.
CPUS=$(( $(nproc) < 2 ? 2 : $(nproc) ))

need() { command -v "$1" >/dev/null || { echo "error: $1 not found: apt-get install slurm-wlm munge" >&2; exit 2; }; }

start() {
  need slurmctld; need slurmd; need munged
  [ "$(id -u)" = 0 ] || { echo "error: the daemons run as root: run this script as root" >&2; exit 2; }
  if scontrol ping 2>/dev/null | grep -q UP; then echo "slurm already up"; return 0; fi
  mkdir -p "$DIR"/{state,spool,log,munge}
  chmod 700 "$DIR/munge"
  [ -s "$DIR/munge/munge.key" ] || { dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none; chmod 400 "$DIR/munge/munge.key"; }
  mkdir -p /run/munge
  pgrep -x munged >/dev/null || munged --force --key-file="$DIR/munge/munge.key" \
    --log-file="$DIR/log/munged.log" --pid-file="$DIR/munge/munged.pid" --seed-file="$DIR/munge/seed"
  MEM=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
  mkdir -p /etc/slurm
  cat > /etc/slurm/slurm.conf <<CONF
ClusterName=seqlab
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobRequeue=1
KillWait=30
MinJobAge=600
ReturnToService=2
SlurmdParameters=config_overrides
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
  slurmctld -i
  slurmd
  for _ in $(seq 60); do
    if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then echo "slurm up: partition debug on $HOST"; return 0; fi
    sleep 0.5
  done
  echo "error: slurm did not come up: see $DIR/log" >&2; exit 1
}

stop() {
  scancel --user=root 2>/dev/null || true
  for pidfile in "$DIR/slurmd.pid" "$DIR/slurmctld.pid" "$DIR/munge/munged.pid"; do
    [ -s "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  echo "slurm stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) scontrol ping && sinfo ;;
  *) echo "usage: $0 start | stop | status" >&2; exit 2 ;;
esac
