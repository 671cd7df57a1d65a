#!/usr/bin/env bash
# Slurm testing: tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args].
# Same environment variables as tools/slurm_train.sh (GPUS=0 and NTASKS on a cluster without GPUs).
source "$(dirname "$0")/launch_env.sh"
srun_command "${1:-}"
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
CHECKPOINT=$4

set -x
exec "${SRUN[@]}" -p "$PARTITION" --job-name="$JOB_NAME" ${SRUN_ARGS:-} \
    "$PYTHON" -u "$HERE/test.py" "$CONFIG" "$CHECKPOINT" --launcher slurm "${@:5}"
