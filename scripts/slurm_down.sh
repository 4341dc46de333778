#!/usr/bin/env bash
# Stop the cluster of scripts/slurm_up.sh: cancel its jobs, then end the daemons it started, by
# the PIDs it recorded (a process whose PID was reused by another program is left alone).
set -uo pipefail
DIR="${TRANSFERLAB_SLURM_DIR:-/tmp/transferlab-slurm}"
[ -f "$DIR/pids" ] || { echo "slurm_down: nothing recorded in $DIR/pids"; exit 0; }
export SLURM_CONF="$DIR/slurm.conf"
if scontrol ping >/dev/null 2>&1; then
  scancel --quiet --full -u "$(id -un)" 2>/dev/null
  for _ in $(seq 50); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.2; done
fi
stop() {  # stop NAME PID: TERM, then KILL after 10 s
  local name=$1 pid=$2
  kill -0 "$pid" 2>/dev/null || return 0
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$name" || return 0  # not ours any more
  kill "$pid"
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
  kill -9 "$pid" 2>/dev/null
}
tac "$DIR/pids" | while read -r name pid; do stop "$name" "$pid"; done  # slurmd, slurmctld, munged
rm -f "$DIR/pids"
echo "slurm_down: stopped"
