#!/usr/bin/env bash
# Distributed training through torchrun (see dist_launch.sh for the knobs).
#   bash tools/dist_train.sh CONFIG NUM_PROCS [train.py options]
exec bash "$(dirname "$0")/dist_launch.sh" train.py "$2" "$1" "${@:3}"
