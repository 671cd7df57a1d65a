#!/usr/bin/env bash
# A throwaway one-host Slurm cluster, to try tools/slurm_train.sh and tools/slurm_test.sh without a
# real one (tests/tools/test_slurm.py uses it). Needs root.
#
#   scripts/local_slurm.sh start [DIR]   # prints SLURM_CONF=DIR/slurm.conf as its last line
#   export SLURM_CONF=DIR/slurm.conf     # then srun, sbatch, sinfo use this cluster
#   scripts/local_slurm.sh stop DIR      # stops the daemons it started, deletes DIR
#
# start installs slurm-wlm and munge with apt-get when missing, writes every config, key, log,
# state and socket file under DIR (default: a new temporary folder), starts munged (as the munge
# user, on its own socket, with its own key), slurmctld and slurmd directly (no systemd), records
# their PIDs in DIR/pids and waits until the node is idle. One partition, "debug", holds the node
# with all its CPUs (from `slurmd -C`) and no GPUs. stop signals exactly the recorded PIDs.
# Ports: SLURMCTLD_PORT and SLURMD_PORT (default 6817 and 6818, Slurm's own defaults). Exit status
# 3: the packages could not be installed.
set -euo pipefail

MARKER=.local_slurm  # stop deletes only a folder that start made

log() { printf '[local_slurm] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

install_packages() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
        && command -v sbatch >/dev/null && return
    log "installing slurm-wlm and munge with apt-get"
    local apt=(apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends slurm-wlm munge)
    DEBIAN_FRONTEND=noninteractive "${apt[@]}" >&2 \
        || { apt-get -o DPkg::Lock::Timeout=300 update -q >&2 && DEBIAN_FRONTEND=noninteractive "${apt[@]}" >&2; } \
        || { log "error: apt-get could not install slurm-wlm and munge"; exit 3; }
}

# munged refuses a key that other users could read, and a socket they cannot reach.
start_munge() {
    local dir=$1/munge
    mkdir -p "$dir"
    head -c 1024 /dev/urandom > "$dir/munge.key"
    chown -R munge:munge "$dir"
    chmod 755 "$dir"  # clients reach the socket; the key stays private
    chmod 400 "$dir/munge.key"
    setpriv --reuid=munge --regid=munge --init-groups \
        munged --foreground --socket="$dir/munge.socket" --key-file="$dir/munge.key" \
        --pid-file="$dir/munged.pid" --seed-file="$dir/munged.seed" --log-file="$dir/munged.log" \
        > "$dir/munged.out" 2>&1 &
    echo "munged $!" >> "$1/pids"
    for _ in $(seq 50); do [[ -S "$dir/munge.socket" ]] && return; sleep 0.1; done
    die "munged did not start: $(cat "$dir/munged.out" "$dir/munged.log" 2>/dev/null)"
}

write_slurm_conf() {
    local dir=$1 host node
    host=$(hostname -s)
    # The node as slurmd sees it (CPUs, sockets, cores, threads); memory is left to Slurm's default.
    node=$(slurmd -C | head -n1 | tr ' ' '\n' | grep -E '^(NodeName|CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore)=' | tr '\n' ' ')
    cat > "$dir/slurm.conf" <<EOF
ClusterName=local
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmctldPort=${SLURMCTLD_PORT:-6817}
SlurmdPort=${SLURMD_PORT:-6818}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    mkdir -p "$dir/state" "$dir/spool"
}

start() {
    [[ $(id -u) == 0 ]] || die "needs root (it starts munged, slurmctld and slurmd)"
    install_packages
    local dir=${1:-$(mktemp -d /tmp/local_slurm.XXXXXX)}
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    chmod 755 "$dir"  # the munge user walks into DIR/munge
    touch "$dir/$MARKER" "$dir/pids"
    start_munge "$dir"
    write_slurm_conf "$dir"
    slurmctld -D -f "$dir/slurm.conf" > "$dir/slurmctld.out" 2>&1 &
    echo "slurmctld $!" >> "$dir/pids"
    slurmd -D -f "$dir/slurm.conf" > "$dir/slurmd.out" 2>&1 &
    echo "slurmd $!" >> "$dir/pids"
    for _ in $(seq 100); do
        [[ $(SLURM_CONF=$dir/slurm.conf sinfo -h -o %T 2>/dev/null) == idle ]] && { echo "SLURM_CONF=$dir/slurm.conf"; return; }
        sleep 0.3
    done
    log "the node did not become idle in 30 s; logs:"
    tail -n 20 "$dir"/*.log "$dir"/*.out >&2 || true
    stop "$dir"
    exit 1
}

# Signal each recorded PID if it still runs the daemon recorded with it (a PID can be reused).
stop() {
    local dir=${1:?usage: $0 stop DIR} name pid alive
    [[ -f "$dir/$MARKER" ]] || die "$dir was not made by $0 start"
    while read -r name pid; do
        [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" ]] && kill -TERM "$pid"
    done < "$dir/pids"
    for _ in $(seq 50); do
        alive=0
        while read -r name pid; do [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" ]] && alive=1; done < "$dir/pids"
        (( alive )) || break
        sleep 0.2
    done
    while read -r name pid; do
        [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" ]] && kill -KILL "$pid"
    done < "$dir/pids"
    rm -rf "$dir"
}

case ${1:-} in
    start) start "${2:-}" ;;
    stop) stop "${2:-}" ;;
    *) die "usage: $0 start [DIR] | stop DIR" ;;
esac
