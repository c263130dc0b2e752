#!/usr/bin/env bash
# A single-node Slurm for the tests (Debian packages, Slurm 22.05+), as root, without
# systemd: munged, slurmctld and slurmd started by hand, the node named `hostname -s` at
# 127.0.0.1. The node claims SWEEP_SLURM_CPUS CPUs (default 8, more than a small CI machine
# has: config_overrides) so a 4-task test array runs at once.
#
#   bash .ci/slurm_up.sh        # install if missing, configure, start, wait for the node
#   bash .ci/slurm_up.sh down   # stop the daemons (by the PIDs in their pid files)
set -euo pipefail

pid_of() { [ -s "$1" ] && cat "$1" || true; }
stop_all() {
    for f in /run/slurm/slurmd.pid /run/slurm/slurmctld.pid /run/munge/munged.pid; do
        p=$(pid_of "$f")
        if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then
            kill -TERM "$p"
            for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        fi
    done
}
if [ "${1:-up}" = down ]; then stop_all; exit 0; fi
if [ "$(id -u)" != 0 ]; then echo "slurm_up.sh must run as root" >&2; exit 1; fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null 2>&1 ||
        { apt-get update -qq && apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null; }
fi

[ -s /etc/munge/munge.key ] || { mungekey --create --force 2>/dev/null || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none; }
chown munge:munge /etc/munge/munge.key
chmod 400 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge

NODE=$(hostname -s)
CPUS=${SWEEP_SLURM_CPUS:-8}
OVR=""
[ "$CPUS" -gt "$(nproc)" ] && OVR="SlurmdParameters=config_overrides"
MEM=$(( $(awk '/MemTotal/{print $2}' /proc/meminfo) / 1024 - 1024 ))
install -d -o slurm -g slurm /run/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm
mkdir -p /etc/slurm
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=sweepci
SlurmctldHost=localhost
SlurmUser=slurm
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmctldPort=6817
SlurmdPort=6818
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
MaxArraySize=10001
KillWait=5
$OVR
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF

stop_all
setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged
for _ in $(seq 50); do munge -n </dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
/usr/sbin/slurmctld -c
/usr/sbin/slurmd
for _ in $(seq 150); do sinfo -h -o '%T' 2>/dev/null | grep -qx idle && break; sleep 0.2; done
if ! sinfo -h -o '%T' | grep -qx idle; then
    echo "slurm node did not become idle:" >&2
    sinfo >&2 || true
    tail -20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
    exit 1
fi
echo "slurm $(sinfo -V | awk '{print $2}') up: node $NODE, $CPUS CPUs, partition debug" >&2
