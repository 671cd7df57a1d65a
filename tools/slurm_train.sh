#!/usr/bin/env bash
# Slurm training: tools/slurm_train.sh PARTITION JOB_NAME CONFIG [WORK_DIR] [train.py args].
# GPU cluster: GPUS processes in all (default 8), GPUS_PER_NODE per node (default min(GPUS, 8)).
# Cluster without GPUs: GPUS=0, NTASKS processes (default 1), NTASKS_PER_NODE per node (optional).
# CPUS_PER_TASK (default 5), SRUN_ARGS (more srun options), MASTER_PORT (default: from the job id
# without CUDA, mmengine's choice with CUDA), PYTHON: see docs/distributed.md.
source "$(dirname "$0")/launch_env.sh"
srun_command "${1:-}"
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=${4:-}
EXTRA=("${@:5}")
[[ -n "$WORK_DIR" ]] && EXTRA=(--work-dir "$WORK_DIR" "${EXTRA[@]}")

set -x
exec "${SRUN[@]}" -p "$PARTITION" --job-name="$JOB_NAME" ${SRUN_ARGS:-} \
    "$PYTHON" -u "$HERE/train.py" "$CONFIG" --launcher slurm "${EXTRA[@]}"
