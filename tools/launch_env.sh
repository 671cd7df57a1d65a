# Sourced by tools/{dist,slurm}_{train,test}.sh: the interpreter, import path and launcher command
# lines they share. PYTHON defaults to the project's .venv/bin/python when that exists (a fresh
# machine's `python` has no torch), else to `python`.
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [[ -z ${PYTHON:-} ]]; then
    if [[ -x "$HERE/../.venv/bin/python" ]]; then PYTHON=$HERE/../.venv/bin/python; else PYTHON=python; fi
fi
export PYTHONPATH="$HERE/..${PYTHONPATH:+:$PYTHONPATH}"

# torchrun on this node: NNODES nodes (NODE_RANK is this one), node 0 at MASTER_ADDR:PORT.
TORCHRUN=("$PYTHON" -m torch.distributed.run --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}"
          --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${PORT:-29500}")

# usage_error MESSAGE: the one line the Python tools print for a user's mistake, and their exit code 2.
usage_error() {
    echo "$(basename "$0"): error: $*" >&2
    exit 2
}

# need_process_count GPUS USAGE: GPUS, the processes per node, must be a positive integer.
need_process_count() {
    [[ ${1:-} =~ ^[1-9][0-9]*$ ]] || usage_error "GPUS must be the number of processes per node, 1 or more (one per" \
        "GPU; without CUDA, CPU processes), got '${1:-}'; usage: $2"
}

# srun_command PARTITION: the SRUN array, srun with the task layout of tools/slurm_*.sh. GPU cluster: GPUS
# processes (default 8, one per GPU), GPUS_PER_NODE per node (default min(GPUS, 8)), each node with
# --gres=gpu:GPUS_PER_NODE. Cluster without GPUs (GPUS=0): NTASKS processes (default 1),
# NTASKS_PER_NODE per node when set (else Slurm packs them by CPUs), no --gres, and CUDA hidden from
# the tasks, so that they take the gloo path even on nodes that have GPUs.
srun_command() {
    local gpus=${GPUS:-8} tasks
    if (( gpus > 0 )); then
        local per_node=${GPUS_PER_NODE:-$(( gpus < 8 ? gpus : 8 ))}
        tasks=(--gres=gpu:"$per_node" --ntasks="$gpus" --ntasks-per-node="$per_node")
    else
        tasks=(--ntasks="${NTASKS:-1}" ${NTASKS_PER_NODE:+--ntasks-per-node="$NTASKS_PER_NODE"})
        export CUDA_VISIBLE_DEVICES=''
    fi
    local cpus=${CPUS_PER_TASK:-5} node_cpus
    # More CPUs on one node than any node of the partition has: Slurm would queue the job forever.
    node_cpus=$(sinfo -h -N -p "$1" -o %c 2>/dev/null | sort -n | tail -n1 || true)
    local need=$(( cpus * ${per_node:-${NTASKS_PER_NODE:-1}} ))
    if [[ $node_cpus =~ ^[0-9]+$ ]] && (( need > node_cpus )); then
        usage_error "the tasks ask for $need CPUs on a node (CPUS_PER_TASK=$cpus), but the nodes of partition" \
            "$1 have at most $node_cpus (sinfo): the job would wait forever; set CPUS_PER_TASK (and" \
            "NTASKS_PER_NODE) so that they fit"
    fi
    SRUN=(srun "${tasks[@]}" --cpus-per-task="$cpus" --kill-on-bad-exit=1)
}
