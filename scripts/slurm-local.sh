#!/usr/bin/env bash
# A private single-node Slurm cluster on this machine, for the sweep's tests and for trying
# `scripts/sweep.sh --slurm` without a cluster: its own munge key and munged, slurmctld and slurmd with a
# generated slurm.conf, everything (state, spool, logs, sockets) inside DIR. No systemd and no cgroups are
# needed (proctrack/linuxproc, task/none). Needs root (slurmd runs jobs as their users) and Debian's
# slurm-wlm and munge (scripts/setup.sh installs them).
#   scripts/slurm-local.sh start DIR   # then: export SLURM_CONF=DIR/slurm.conf
#   scripts/slurm-local.sh stop DIR
# Exit status 77 (a test's "skipped") where this machine cannot run it (not root, no slurm-wlm), 1 where
# it should have started and did not; the reason on stderr either way. `stop` cancels the cluster's jobs.
set -euo pipefail
[[ $# -eq 2 && ( $1 == start || $1 == stop ) ]] || { sed -n '2,9p' "$0"; exit 2; }
action=$1
cannot() { echo "slurm-local: $*" >&2; exit 77; }  # this machine cannot run it: a test skips
broken() { echo "slurm-local: $*" >&2; exit 1; }   # it should have started: a test fails
if [[ $action == stop && ! -d $2 ]]; then exit 0; fi
mkdir -p "$2"
dir=$(cd "$2" && pwd)
export SLURM_CONF=$dir/slurm.conf

stop() {
  if [[ -f $SLURM_CONF ]] && scontrol ping >/dev/null 2>&1; then
    # Its jobs first (their processes are not children of the daemons once running), then the daemons.
    scancel --full --user="$(id -un)" >/dev/null 2>&1 || true
    for _ in $(seq 60); do [[ -z $(squeue -h -o %i 2>/dev/null) ]] && break; sleep 0.5; done
    scontrol shutdown >/dev/null 2>&1 || true
  fi
  [[ -S $dir/run/munge.sock ]] && munged --stop --socket="$dir/run/munge.sock" >/dev/null 2>&1 || true
  for pidfile in "$dir"/run/*.pid; do  # whatever did not stop when asked
    [[ -f $pidfile ]] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
}
if [[ $action == stop ]]; then stop; exit 0; fi

[[ $(id -u) -eq 0 ]] || cannot "needs root (slurmd starts jobs as their users)"
for tool in munged slurmctld slurmd sbatch squeue scontrol sinfo; do
  command -v "$tool" >/dev/null || cannot "$tool is missing (apt install slurm-wlm munge; scripts/setup.sh does)"
done
# munged insists that every folder above its socket be searchable by all, and its key private.
chmod 755 "$dir"
mkdir -p "$dir/run" "$dir/state" "$dir/spool" "$dir/log"
chmod 755 "$dir/run"
[[ -f $dir/munge.key ]] || { head -c 128 /dev/urandom >"$dir/munge.key"; chmod 600 "$dir/munge.key"; }
[[ -S $dir/run/munge.sock ]] && munge -n -S "$dir/run/munge.sock" >/dev/null 2>&1 &&
  broken "a cluster already runs in $dir: scripts/slurm-local.sh stop $dir first"
munged --key-file="$dir/munge.key" --socket="$dir/run/munge.sock" --pid-file="$dir/run/munged.pid" \
  --log-file="$dir/log/munged.log" --seed-file="$dir/run/munged.seed" ||
  broken "munged did not start: $(tail -n 1 "$dir/log/munged.log" 2>/dev/null)"

# Two free TCP ports, so that a second cluster (or a real one) on the machine does not collide.
read -r ctld_port slurmd_port < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))')
host=$(hostname -s)
cat >"$SLURM_CONF" <<EOF
ClusterName=pbllm-local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/run/munge.sock
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
PartitionName=local Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
slurmctld -f "$SLURM_CONF" || { stop; broken "slurmctld did not start: $(tail -n 1 "$dir/log/slurmctld.log" 2>/dev/null)"; }
slurmd -f "$SLURM_CONF" || { stop; broken "slurmd did not start: $(tail -n 1 "$dir/log/slurmd.log" 2>/dev/null)"; }
for _ in $(seq 60); do
  [[ $(sinfo -h -o %t 2>/dev/null) == idle ]] && { echo "export SLURM_CONF=$SLURM_CONF"; exit 0; }
  sleep 0.5
done
state=$(sinfo -h -o %t 2>&1 || true)
stop
broken "the node did not become idle in 30 s (state: ${state:-none}; logs in $dir/log)"
