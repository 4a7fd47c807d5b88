#!/usr/bin/env bash
# The main job of the README on its embedded default: set up .venv
# (idempotent), generate the toy COCO set, train Mask R-CNN on it on the CPU,
# evaluate the final checkpoint (bbox and segm mAP through CocoMetric) and
# draw how its DiT backbone routed one val image ($WORK_DIR/routing.png).
# Run again, it finds the data and the finished run and only re-evaluates
# and redraws.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/tools/setup_env.sh"
cd "$ROOT"
PY=$ROOT/.venv/bin/python
CONFIG=configs/toy/maskrcnn_dit_b0_toy_coco.py
WORK_DIR=${WORK_DIR:-work_dirs/demo}

"$PY" tools/make_toy_data.py --out data/toy --sets coco
FINAL=$WORK_DIR/iter_$("$PY" -c "from mmengine import Config
print(Config.fromfile('$CONFIG').train_cfg.max_iters)").pth
if [[ -f $WORK_DIR/last_checkpoint && ! -f $WORK_DIR/$(basename "$CONFIG") ]]
then
  # mmengine dumps the config it trains into the work dir: none of this name
  # means the checkpoints there are of another model (an older demo, say)
  echo "[demo] $WORK_DIR holds a run of another config, not of" \
       "$CONFIG; keeping it as it is. Set WORK_DIR=another/dir or move it." >&2
  exit 1
fi
if [[ -f $FINAL ]]; then
  echo "[demo] $FINAL exists: training is done, evaluating it again"
else  # --resume picks up an interrupted demo run where it stopped
  "$PY" tools/train.py "$CONFIG" --work-dir "$WORK_DIR" --resume \
    --cfg-options train_cfg.val_interval=100000
fi
"$PY" tools/test.py "$CONFIG" "$FINAL" --work-dir "$WORK_DIR"
IMAGES=(data/toy/coco/val2017/*.jpg)  # sorted by name: the first val image
IMAGE=${IMAGES[0]}
"$PY" tools/analysis/show_routing.py "$CONFIG" "$FINAL" "$IMAGE" \
  --out "$WORK_DIR/routing.png"
echo "[demo] the routing of $IMAGE is drawn in $WORK_DIR/routing.png"
