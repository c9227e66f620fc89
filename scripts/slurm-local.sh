#!/usr/bin/env bash
# A one-node SLURM cluster on localhost for testing `gliomaseg study --launcher submitit`.
#
#   scripts/slurm-local.sh start    # writes $DIR/slurm.conf, starts munged (if needed), slurmctld, slurmd
#   scripts/slurm-local.sh status   # sinfo
#   scripts/slurm-local.sh stop     # stops the daemons this script started
#
# Needs root and Debian's `slurm-wlm` and `munge` packages (apt-get install slurm-wlm munge).
# No cgroups and no systemd: process tracking by /proc (proctrack/linuxproc), no task plugin, no
# accounting database (so `sacct` knows nothing; poll the jobs' own outputs instead).
# DefMemPerCPU is set because without it every job asks for the whole node's memory and array
# tasks run one at a time.
#
# State, logs and the config live in ${SLURM_LOCAL_DIR:-/tmp/gliomaseg-slurm}. Clients find the
# cluster through SLURM_CONF: after `start`, run the `export SLURM_CONF=...` line it prints.
# On failure `start` prints the failing daemon's own log lines and exits 1.
set -euo pipefail

DIR="${SLURM_LOCAL_DIR:-/tmp/gliomaseg-slurm}"
CONF="$DIR/slurm.conf"
export SLURM_CONF="$CONF"

die() {
    echo "slurm-local: $*" >&2
    exit 1
}

log_tail() {
    # The daemon's own words: the last lines of its log.
    [[ -f "$1" ]] && tail -n 15 "$1" | sed 's/^/    /' >&2 || true
}

write_conf() {
    local cpus mem_mb def_mem
    cpus=$(nproc)
    mem_mb=$(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo)
    mem_mb=$((mem_mb * 9 / 10)) # leave room for the daemons and the system
    def_mem=$((mem_mb / cpus))
    mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
    cat >"$CONF" <<EOF
# Written by scripts/slurm-local.sh: a one-node test cluster on localhost.
ClusterName=gliomaseg-local
SlurmctldHost=$(hostname -s)(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldPort=${SLURM_LOCAL_CTLD_PORT:-16817}
SlurmdPort=${SLURM_LOCAL_SLURMD_PORT:-16818}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$def_mem
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
}

munge_works() {
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1
}

start_munge() {
    if munge_works; then
        return 0
    fi
    [[ -f /etc/munge/munge.key ]] || mungekey --create --keyfile=/etc/munge/munge.key >/dev/null 2>&1 ||
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 2>/dev/null
    chown munge:munge /etc/munge/munge.key 2>/dev/null || true
    chmod 600 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
    # munged normally runs as the munge user; as root it needs --force.
    if ! munged --force --log-file="$DIR/log/munged.log" --pid-file="$DIR/munged.pid" 2>"$DIR/log/munged.err"; then
        echo "slurm-local: munged failed to start:" >&2
        cat "$DIR/log/munged.err" >&2
        log_tail "$DIR/log/munged.log"
        exit 1
    fi
    touch "$DIR/munged.ours"
    for _ in $(seq 50); do
        munge_works && return 0
        sleep 0.1
    done
    log_tail "$DIR/log/munged.log"
    die "munged started but munge -n | unmunge fails"
}

wait_idle() {
    for _ in $(seq 60); do
        state=$(sinfo -h -n localhost -o %t 2>/dev/null || true)
        case "$state" in
        idle* | mix* | alloc*) return 0 ;;
        esac
        sleep 0.5
    done
    echo "slurm-local: the node did not become idle within 30 s (state: ${state:-none})" >&2
    log_tail "$DIR/log/slurmctld.log"
    log_tail "$DIR/log/slurmd.log"
    exit 1
}

start_daemon() {
    local name=$1
    shift
    if ! "$@" 2>"$DIR/log/$name.err"; then
        echo "slurm-local: $name failed to start:" >&2
        cat "$DIR/log/$name.err" >&2
        log_tail "$DIR/log/$name.log"
        exit 1
    fi
}

cmd_start() {
    [[ $(id -u) -eq 0 ]] || die "start needs root (SlurmUser=root)"
    for tool in munged slurmctld slurmd sinfo; do
        command -v "$tool" >/dev/null || die "$tool not found: apt-get install slurm-wlm munge"
    done
    if [[ -f "$DIR/slurmctld.pid" ]] && kill -0 "$(cat "$DIR/slurmctld.pid")" 2>/dev/null; then
        echo "export SLURM_CONF=$CONF"
        return 0
    fi
    write_conf
    start_munge
    # -c: forget jobs of an earlier test cluster; -N: the node's name in slurm.conf, not the hostname.
    start_daemon slurmctld slurmctld -c -f "$CONF"
    start_daemon slurmd slurmd -N localhost -f "$CONF"
    wait_idle
    echo "export SLURM_CONF=$CONF"
}

stop_pids() {
    # SIGTERM to all first, then wait for all: the daemons shut down side by side.
    local pids=() pidfile pid
    for pidfile in "$@"; do
        [[ -f "$pidfile" ]] || continue
        pid=$(cat "$pidfile")
        kill -0 "$pid" 2>/dev/null && kill "$pid" && pids+=("$pid")
        rm -f "$pidfile"
    done
    for _ in $(seq 100); do
        local alive=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [[ $alive -eq 0 ]] && return 0
        sleep 0.1
    done
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
}

cmd_stop() {
    local files=("$DIR/slurmd.pid" "$DIR/slurmctld.pid")
    if [[ -f "$DIR/munged.ours" ]]; then
        files+=("$DIR/munged.pid")
        rm -f "$DIR/munged.ours"
    fi
    stop_pids "${files[@]}"
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
status) sinfo ;;
*) die "usage: $0 start|stop|status" ;;
esac
