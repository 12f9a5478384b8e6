#!/usr/bin/env bash
# A SLURM cluster on this machine, for the slow cluster tests (tests/test_slurm*.py):
#   scripts/cluster/slurm_cluster.sh start [--nodes N] | stop | status | restart-node NAME | stop-node NAME
# Needs root and Debian's slurm-wlm and munge packages (apt-get install slurm-wlm munge). State, spool
# and logs live under $SEQLAB_SLURM_DIR (default /tmp/seqlab-slurm); `stop` ends what `start` made.
#
# --nodes 1 (the default): slurmctld and one slurmd on this host, as it is.
# --nodes N >= 2: N nodes n1..nN, each a network namespace `seqlab-nK` of its own (its own address
#   10.77.0.1K, hostname, spool, log and slurmd), joined by a bridge in a namespace `seqlab-ctl` where
#   slurmctld runs (10.77.0.1). Addresses exist only inside these namespaces and traffic stays between
#   them. munge (a unix socket) and the file system are shared, as on a cluster with a shared home.
#   SLURM's commands must run inside the namespaces: `start` writes wrappers into $DIR/bin that do it;
#   put that folder first on PATH (`export PATH=$SEQLAB_SLURM_DIR/bin:$PATH`, which `start` prints).
set -euo pipefail
DIR=${SEQLAB_SLURM_DIR:-/tmp/seqlab-slurm}
HOST=$(hostname -s)
NET=10.77.0
CTL_NS=seqlab-ctl
# At least 2 CPUs a node: the DDP test runs one job of 2 tasks (1 CPU each). On a 1-CPU machine they share it;
# SlurmdParameters=config_overrides below makes slurmd take the configured count over the hardware's.
CPUS=$(( $(nproc) < 2 ? 2 : $(nproc) ))
CLIENTS="sbatch srun salloc squeue scancel scontrol sinfo sacct sstat"

need() { command -v "$1" >/dev/null || { echo "error: $1 not found: apt-get install slurm-wlm munge" >&2; exit 2; }; }
up() { "$DIR/bin/scontrol" ping 2>/dev/null | grep -q UP; }
node_ns() { echo "seqlab-$1"; }

memory_mb() { awk -v n="$1" '/MemTotal/ {print int($2 / 1024 * 0.9 / n)}' /proc/meminfo; }  # a node's share

write_conf() {  # controller host (name and address), node lines, partition's node list
  mkdir -p /etc/slurm
  cat > /etc/slurm/slurm.conf <<CONF
ClusterName=seqlab
SlurmctldHost=$1
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
SlurmdTimeout=20
SlurmdParameters=config_overrides
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.%n.log
$2
PartitionName=debug Nodes=$3 Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
}

start_munge() {
  mkdir -p "$DIR"/{state,spool,log,munge,bin} /run/munge
  chmod 700 "$DIR/munge"
  [ -s "$DIR/munge/munge.key" ] || { dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none; chmod 400 "$DIR/munge/munge.key"; }
  [ -S /run/munge/munge.socket.2 ] && pgrep -x munged >/dev/null || munged --force --key-file="$DIR/munge/munge.key" \
    --log-file="$DIR/log/munged.log" --pid-file="$DIR/munge/munged.pid" --seed-file="$DIR/munge/seed"
  for _ in $(seq 20); do [ -S /run/munge/munge.socket.2 ] && return 0; sleep 0.25; done
  echo "error: munged did not start: see $DIR/log/munged.log" >&2; exit 1
}

write_wrappers() {  # $1: the namespace the commands run in ("" = this host's own network)
  for cmd in $CLIENTS; do
    local real
    real=$(command -v "$cmd" || true)
    [ -n "$real" ] || continue
    if [ -z "$1" ]; then
      ln -sf "$real" "$DIR/bin/$cmd"
    else  # already inside one of the cluster's namespaces (a job's own srun): run it there
      printf '#!/bin/sh\n[ -n "$(ip netns identify $$ 2>/dev/null)" ] && exec %s "$@"\nexec nsenter --net=/run/netns/%s %s "$@"\n' \
        "$real" "$1" "$real" > "$DIR/bin/$cmd"
      chmod +x "$DIR/bin/$cmd"
    fi
  done
}

in_ns() {  # namespace, hostname, command...: the command on that network under that hostname, its
  # /etc/hosts the cluster's (`ip netns exec` would also remount /sys, hiding the cgroups slurmd reads)
  local ns=$1 name=$2
  shift 2
  nsenter --net="/run/netns/$ns" unshare --uts --mount \
    sh -c "mount --bind /etc/netns/$ns/hosts /etc/hosts && hostname $name && exec \"\$@\"" sh "$@"
}

start_slurmd() {  # node name: its slurmd in its namespace, under its own hostname
  mkdir -p "$DIR/spool/$1"
  in_ns "$(node_ns "$1")" "$1" slurmd -N "$1"
}

start() {
  local nodes=1
  [ "${1:-}" = --nodes ] && nodes=${2:?--nodes needs a number}
  [[ "$nodes" =~ ^[1-9]$ ]] || { echo "error: --nodes $nodes: give 1 to 9 nodes" >&2; exit 2; }
  need slurmctld; need slurmd; need munged
  [ "$(id -u)" = 0 ] || { echo "error: the daemons run as root: run this script as root" >&2; exit 2; }
  mkdir -p "$DIR/bin"
  if up; then echo "slurm already up: stop it first to change its nodes"; return 0; fi
  start_munge
  if [ "$nodes" = 1 ]; then
    write_wrappers ""
    write_conf "$HOST" "NodeName=$HOST CPUs=$CPUS RealMemory=$(memory_mb 1) State=UNKNOWN" "$HOST"
    slurmctld -i
    mkdir -p "$DIR/spool/$HOST"
    slurmd
  else
    command -v ip >/dev/null && command -v nsenter >/dev/null || { echo "error: ip, nsenter and unshare are needed (apt-get install iproute2 util-linux)" >&2; exit 2; }
    local mem names="" lines="" hosts="127.0.0.1 localhost"$'\n'"$NET.1 ctl"
    mem=$(memory_mb "$nodes")
    for k in $(seq "$nodes"); do
      names+="${names:+,}n$k"
      lines+="NodeName=n$k NodeAddr=$NET.1$k NodeHostname=n$k CPUs=$CPUS RealMemory=$mem State=UNKNOWN"$'\n'
      hosts+=$'\n'"$NET.1$k n$k"
    done
    ip netns add "$CTL_NS"
    ip -n "$CTL_NS" link set lo up
    ip -n "$CTL_NS" link add slbr type bridge
    ip -n "$CTL_NS" addr add "$NET.1/24" dev slbr
    ip -n "$CTL_NS" link set slbr up
    for ns in $CTL_NS $(for k in $(seq "$nodes"); do node_ns "n$k"; done); do
      mkdir -p "/etc/netns/$ns"
      printf '%s\n' "$hosts" > "/etc/netns/$ns/hosts"
    done
    for k in $(seq "$nodes"); do
      local ns
      ns=$(node_ns "n$k")
      ip netns add "$ns"
      ip -n "$ns" link set lo up
      ip -n "$ns" link add sl0 type veth peer name "sln$k" netns "$CTL_NS"
      ip -n "$ns" addr add "$NET.1$k/24" dev sl0
      ip -n "$ns" link set sl0 up
      ip -n "$CTL_NS" link set "sln$k" master slbr up
    done
    write_wrappers "$CTL_NS"
    write_conf "ctl($NET.1)" "$lines" "$names"
    in_ns "$CTL_NS" ctl slurmctld -i
    for k in $(seq "$nodes"); do start_slurmd "n$k"; done
  fi
  for _ in $(seq 60); do
    if [ "$("$DIR/bin/sinfo" -h -o %T 2>/dev/null | grep -cE '^(idle|mixed|allocated)')" -ge 1 ] \
      && ! "$DIR/bin/sinfo" -h -N -o %T 2>/dev/null | grep -qvE '^(idle|mixed|allocated)'; then
      echo "slurm up: partition debug on $("$DIR/bin/sinfo" -h -o %N)"
      [ "$nodes" = 1 ] || echo "its commands run in its namespaces: export PATH=$DIR/bin:\$PATH"
      return 0
    fi
    sleep 0.5
  done
  echo "error: slurm did not come up: see $DIR/log" >&2; exit 1
}

stop_node() {  # a node's slurmd and every process in its namespace (a node failing), or none left
  local ns
  ns=$(node_ns "$1")
  ip netns pids "$ns" >/dev/null 2>&1 || { echo "error: no node $1 (namespace $ns)" >&2; exit 2; }
  ip netns pids "$ns" | xargs -r kill -9
  echo "node $1 stopped"
}

stop() {
  [ -x "$DIR/bin/scancel" ] && "$DIR/bin/scancel" --user=root 2>/dev/null || true
  for pidfile in "$DIR"/slurmd*.pid "$DIR/slurmctld.pid" "$DIR/munge/munged.pid"; do
    [ -s "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  for _ in $(seq 20); do pgrep -x munged >/dev/null || pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null || break; sleep 0.25; done
  for ns in $(ip netns list 2>/dev/null | awk '$1 ~ /^seqlab-/ {print $1}'); do
    ip netns pids "$ns" | xargs -r kill -9
    ip netns delete "$ns"  # its links go with it
    rm -rf "/etc/netns/$ns"
  done
  rm -rf "$DIR/bin"
  echo "slurm stopped"
}

case "${1:-}" in
  start) shift; start "$@" ;;
  stop) stop ;;
  status) up && "$DIR/bin/sinfo" -N ;;
  stop-node) stop_node "${2:?stop-node needs a node name, e.g. n2}" ;;
  restart-node) start_slurmd "${2:?restart-node needs a node name, e.g. n2}" && echo "node $2 restarted" ;;
  *) echo "usage: $0 start [--nodes N] | stop | status | stop-node NAME | restart-node NAME" >&2; exit 2 ;;
esac
