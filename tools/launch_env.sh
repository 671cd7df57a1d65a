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

# srun_command: the SRUN array, srun with the task layout of tools/slurm_*.sh. GPU cluster: GPUS
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
    SRUN=(srun "${tasks[@]}" --cpus-per-task="${CPUS_PER_TASK:-5}" --kill-on-bad-exit=1)
}
