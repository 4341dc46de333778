#!/usr/bin/env bash
# A one-node SLURM cluster on 127.0.0.1 (munged, slurmctld, slurmd), for the tests marked `slurm`
# and for trying hydra/launcher=slurm on one machine. Installs Debian's packages when missing,
# starts the daemons by hand (no systemd needed) and waits until the node is idle.
#   bash scripts/slurm_up.sh && export SLURM_CONF=/tmp/transferlab-slurm/slurm.conf
#   bash scripts/slurm_down.sh     # ends what this script started, by PID
# Needs root (or sudo): the daemons run as root, munged as the munge user.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR="${TRANSFERLAB_SLURM_DIR:-/tmp/transferlab-slurm}"
CONF="$DIR/slurm.conf"
started=$(date +%s.%N)
export SLURM_CONF="$CONF"

alive() { [ -f "$DIR/pids" ] && while read -r _ pid; do kill -0 "$pid" 2>/dev/null || return 1; done <"$DIR/pids"; }
if alive && sinfo -h >/dev/null 2>&1; then
  echo "slurm_up: already up (SLURM_CONF=$CONF)"; exit 0
fi
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null; then exec sudo -E bash "$0" "$@"; fi
  echo "slurm_up: needs root to start the SLURM daemons" >&2; exit 1
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
   || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
  # apt's policy-rc.d blocks service starts in containers; the daemons are started below.
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    slurmctld slurmd slurm-client munge >/dev/null
fi
installed=$(date +%s.%N)

mkdir -p "$DIR"
rm -rf "$DIR/state" "$DIR/spool" "$DIR/pids"
mkdir -p "$DIR/state" "$DIR/spool"
: >"$DIR/pids"
start() {  # start NAME CMD...: in a session of its own, its PID recorded for slurm_down.sh
  local name=$1; shift
  setsid "$@" </dev/null >>"$DIR/$name.out" 2>&1 &
  echo "$name $!" >>"$DIR/pids"
}
wait_for() {  # wait_for WHAT SECONDS CMD...: until CMD succeeds
  local what=$1 seconds=$2; shift 2
  for _ in $(seq $((seconds * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "slurm_up: $what did not come up in ${seconds} s; logs in $DIR" >&2; exit 1
}

# munge authenticates every message between the daemons and the clients. A munged already
# running (a real install) is used as it is.
if ! { munge -n | unmunge; } >/dev/null 2>&1; then
  [ -s /etc/munge/munge.key ] || { mungekey --create 2>/dev/null || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; }
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  mkdir -p /run/munge /var/log/munge /var/lib/munge && chown munge:munge /run/munge /var/log/munge /var/lib/munge
  start munged setpriv --reuid munge --regid munge --init-groups munged --foreground
  wait_for munged 10 bash -c 'munge -n | unmunge'
fi

cpus=$(nproc)
mem_mb=$(($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10))  # leave 10% to the OS
sed -e "s|@HOST@|$(hostname -s)|g" -e "s|@DIR@|$DIR|g" -e "s|@CPUS@|$cpus|g" \
    -e "s|@MEM_MB@|$mem_mb|g" -e "s|@MEM_PER_CPU@|$((mem_mb / cpus / 4))|g" \
    -e "s|@CTLD_PORT@|${SLURMCTLD_PORT:-6817}|g" -e "s|@SLURMD_PORT@|${SLURMD_PORT:-6818}|g" \
    scripts/slurm.conf.in >"$CONF"
start slurmctld slurmctld -D -c -f "$CONF"
wait_for slurmctld 30 scontrol ping
start slurmd slurmd -D -f "$CONF"
wait_for "the node" 30 bash -c '[ "$(sinfo -h -o %t)" = idle ]'
awk -v t0="$started" -v t1="$installed" -v t2="$(date +%s.%N)" 'BEGIN {
  printf "slurm_up: 1 node idle in %.1f s (install %.1f s, start %.1f s); SLURM_CONF=%s\n", t2 - t0, t1 - t0, t2 - t1, ENVIRON["SLURM_CONF"] }'
