#!/usr/bin/env bash
# torchrun for the dist_*.sh tools:  dist_launch.sh SCRIPT NUM_PROCS [SCRIPT args]
# NNODES, NODE_RANK, MASTER_ADDR and PORT set a multi-machine run; PYTHON the
# interpreter (default: .venv/bin/python, else python). Without CUDA the
# processes use gloo.
source "$(dirname "$0")/venv_python.sh"
SCRIPT=$1
NPROCS=$2
PYTHONPATH="$(dirname "$0")/..":${PYTHONPATH:-} \
"$PYTHON" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" \
    --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" \
    --nproc_per_node="$NPROCS" \
    --master_port="${PORT:-29500}" \
    "$(dirname "$0")/$SCRIPT" "${@:3}" --launcher pytorch
