#!/usr/bin/env bash
# A throw-away SLURM cluster on this machine for tests: munged, slurmctld and one slurmd per
# emulated node (n1, n2, ... all on 127.0.0.1 with their own ports), run as plain processes
# with every file under $SLURM_TEST_DIR. Installs Debian's slurm packages when missing (root).
#
#   scripts/slurm-test-cluster.sh up      prints "export SLURM_CONF=..."; idempotent
#   scripts/slurm-test-cluster.sh down    cancels jobs, stops the daemons it started
#
#   SLURM_TEST_DIR (default /tmp/gan-launch-slurm), SLURM_TEST_NODES (2), SLURM_TEST_CPUS (2),
#   SLURM_TEST_PORT (16817: slurmctld; slurmd of node i listens on port + 10 + i)
set -euo pipefail
cmd=${1:?usage: slurm-test-cluster.sh up|down}
D=${SLURM_TEST_DIR:-/tmp/gan-launch-slurm}
NODES=${SLURM_TEST_NODES:-2}
CPUS=${SLURM_TEST_CPUS:-2}
PORT=${SLURM_TEST_PORT:-16817}
CONF=$D/etc/slurm.conf
export SLURM_CONF=$CONF
log() { echo "[slurm-test-cluster] $*" >&2; }

running() { # running PIDFILE NAME: the pid file names a live (not zombie) process of that program
  local pid
  [ -s "$1" ] || return 1
  pid=$(cat "$1")
  [ -r "/proc/$pid/stat" ] || return 1
  [ "$(awk '{print $3}' "/proc/$pid/stat")" != Z ] || return 1
  # The process's own name, not its executable's: Debian installs slurmctld and slurmd as
  # alternatives links to slurmctld-wlm and slurmd-wlm, so the resolved path never matched and
  # `down` left every daemon running.
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]
}

stop() { # stop PIDFILE NAME
  if running "$1" "$2"; then
    kill "$(cat "$1")" 2>/dev/null || true
    for _ in $(seq 1 50); do running "$1" "$2" || break; sleep 0.1; done
    # A daemon still shutting down after 5 s would outlive its deleted directory: kill it.
    if running "$1" "$2"; then kill -9 "$(cat "$1")" 2>/dev/null || true; fi
  fi
  rm -f "$1"
}

down() {
  if [ -f "$CONF" ] && running "$D/run/slurmctld.pid" slurmctld; then
    scancel --full --quiet --user=root 2>/dev/null || true
    sleep 1
  fi
  for i in $(seq 1 "$NODES"); do stop "$D/run/slurmd-n$i.pid" slurmd; done
  stop "$D/run/slurmctld.pid" slurmctld
  stop "$D/munge/munged.pid" munged
}

if [ "$cmd" = down ]; then
  down
  exit 0
fi
[ "$cmd" = up ] || { echo "usage: slurm-test-cluster.sh up|down" >&2; exit 2; }

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null \
   || ! command -v sbatch >/dev/null; then
  log "installing slurmctld slurmd slurm-client munge from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
fi

mkdir -p "$D"/{etc,munge,state,spool,run,log}
chmod 755 "$D/munge" # munged refuses a socket directory others cannot traverse
nodes=""
for i in $(seq 1 "$NODES"); do
  nodes+="NodeName=n$i NodeHostname=localhost NodeAddr=127.0.0.1 Port=$((PORT + 10 + i)) CPUs=$CPUS RealMemory=2000 State=UNKNOWN"$'\n'
done
cat > "$CONF.new" <<CONF
ClusterName=ganlaunchtest
SlurmctldHost=localhost
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire also bounds how long a requeued job waits before it may run again.
AuthInfo=socket=$D/munge/munge.socket,cred_expire=10
MailProg=/bin/true
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool/%n
SlurmctldPidFile=$D/run/slurmctld.pid
SlurmdPidFile=$D/run/slurmd-%n.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,sched_interval=1
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
InactiveLimit=0
MinJobAge=300
KillWait=10
Waittime=0
JobRequeue=1
SlurmdParameters=config_overrides
$nodes
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
if ! cmp -s "$CONF.new" "$CONF"; then
  down
  mv "$CONF.new" "$CONF"
else
  rm "$CONF.new"
fi

if ! running "$D/munge/munged.pid" munged; then
  [ -f "$D/munge/munge.key" ] || { dd if=/dev/urandom of="$D/munge/munge.key" bs=1024 count=1 2>/dev/null; chmod 400 "$D/munge/munge.key"; }
  munged --socket="$D/munge/munge.socket" --key-file="$D/munge/munge.key" --pid-file="$D/munge/munged.pid" \
    --log-file="$D/munge/munged.log" --seed-file="$D/munge/munged.seed"
fi
running "$D/run/slurmctld.pid" slurmctld || slurmctld -i -f "$CONF"
for i in $(seq 1 "$NODES"); do
  running "$D/run/slurmd-n$i.pid" slurmd || slurmd -f "$CONF" -N "n$i"
done
for _ in $(seq 1 100); do
  states=$(sinfo -h -N -o '%t' 2>/dev/null | sort -u | tr '\n' ' ')
  case "$states" in
    "idle "|"idle mix "|"mix "|"alloc "|"alloc idle "|"alloc mix ") break ;;
  esac
  sleep 0.1
done
sinfo -h -N -o '%N %t' >&2
echo "export SLURM_CONF=$CONF"
