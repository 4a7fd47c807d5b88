#!/usr/bin/env bash
# The main job of the README on its embedded default: set up .venv
# (idempotent), generate the toy COCO set, train Mask R-CNN on it on the CPU,
# evaluate the final checkpoint (bbox and segm mAP through CocoMetric) and
# draw how its DiT backbone routed one val image
# ($WORK_DIR/routing/<image stem>_routing.png; at budgets 1.0 and 0.5 in
# routing/budget_<r>/), and sweep the run-time budget: mAP against executed
# FLOPs and latency at fixed budgets from 1.0 to 0.3, the learned decisions
# and three calibrated average budgets, PVTv2 marked
# ($WORK_DIR/sweep/sweep.png, the table printed).
# Run again, it finds the data and the finished run and prints the metrics
# its evaluation logged ($WORK_DIR/evaluation.log); the evaluation, the
# pictures and the sweep run again only when they are not of the final
# checkpoint (another ITERS, a checkpoint newer than they are).
# WORK_DIR=dir puts the run elsewhere (default work_dirs/demo); ITERS=N stops
# training after N iterations (default: the config's 600; the learning-rate
# steps stay where the config puts them), e.g. ITERS=20 to try the wiring.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
CONFIG=configs/toy/maskrcnn_dit_b0_toy_coco.py
WORK_DIR=${WORK_DIR:-work_dirs/demo}
# what would stop the demo is refused before anything is set up or written
if [[ -n ${ITERS:-} && ! $ITERS =~ ^[1-9][0-9]*$ ]]; then
  echo "[demo] ITERS must be a positive number of iterations, got '$ITERS'" >&2
  exit 1
fi
if [[ -f $WORK_DIR/last_checkpoint && ! -f $WORK_DIR/$(basename "$CONFIG") ]]
then
  # mmengine dumps the config it trains into the work dir: none of this name
  # means the checkpoints there are of another model (an older demo, say)
  echo "[demo] $WORK_DIR holds a run of another config, not of" \
       "$CONFIG; keeping it as it is. Set WORK_DIR=another/dir or move it." >&2
  exit 1
fi

bash "$ROOT/tools/setup_env.sh"
PY=$ROOT/.venv/bin/python
"$PY" tools/make_toy_data.py --out data/toy --sets coco
ITERS=${ITERS:-$("$PY" -c "from mmengine import Config
print(Config.fromfile('$CONFIG').train_cfg.max_iters)")}
FINAL=$WORK_DIR/iter_$ITERS.pth
if [[ -f $FINAL ]]; then
  echo "[demo] $FINAL exists: training is done"
else  # --resume picks up an interrupted demo run where it stopped
  "$PY" tools/train.py "$CONFIG" --work-dir "$WORK_DIR" --resume \
    --cfg-options train_cfg.val_interval=100000 train_cfg.max_iters="$ITERS"
fi
# a step after training records the checkpoint it ran on when it finishes
# ($WORK_DIR/.demo_done/<step>); a rerun skips a step whose record names this
# checkpoint and is newer than it, and whose output is there
DONE=$WORK_DIR/.demo_done
done_on_final() {  # STEP OUTPUT
  [[ -f $DONE/$1 && $DONE/$1 -nt $FINAL && $(<"$DONE/$1") == "$FINAL" &&
     -f $2 ]]
}
mark_done() { mkdir -p "$DONE" && echo "$FINAL" > "$DONE/$1"; }
EVALUATION=$WORK_DIR/evaluation.log
if done_on_final evaluation "$EVALUATION"; then
  echo "[demo] $FINAL is evaluated already; its metrics ($EVALUATION):"
  grep -F 'Iter(test)' "$EVALUATION" | tail -n 1
else  # a failed evaluation leaves the log before it as it was
  "$PY" tools/test.py "$CONFIG" "$FINAL" --work-dir "$WORK_DIR" 2>&1 |
    tee "$EVALUATION.part"
  mv "$EVALUATION.part" "$EVALUATION"
  mark_done evaluation
fi
IMAGES=(data/toy/coco/val2017/*.jpg)  # sorted by name: the first val image
IMAGE=${IMAGES[0]}
STEM=$(basename "${IMAGE%.*}")
ROUTING=$WORK_DIR/routing
# the learned decisions in routing/, two run-time budgets in routing/budget_<r>/
if ! done_on_final routing "$ROUTING/budget_0.5/${STEM}_routing.png"; then
  "$PY" tools/visualize_routing.py "$CONFIG" "$FINAL" "$IMAGE" \
    --budget none 1.0 0.5 --out-dir "$ROUTING"
  mark_done routing
fi
echo "[demo] the routing of $IMAGE is drawn in" \
     "$ROUTING/${STEM}_routing.png (learned) and" \
     "$ROUTING/budget_{1.0,0.5}/"
SWEEP=$WORK_DIR/sweep
if done_on_final sweep "$SWEEP/sweep.png"; then
  echo "[demo] $SWEEP/sweep.png is of $FINAL: the sweep is done"
else
  # average budgets: the learned decisions moved to spend r on average over
  # 16 val images (FINAL.calibration.json, which the sweep reads)
  "$PY" tools/analysis_tools/calibrate_budget.py "$CONFIG" "$FINAL" \
    --budgets 0.4 0.5 0.75 --num-images 16 --force
  # mAP, executed FLOPs and latency at each budget (1.0 0.75 0.6 0.5 0.4 0.3),
  # of the learned decisions, of each average budget and of PVTv2
  "$PY" tools/analysis_tools/sweep_budget.py "$CONFIG" "$FINAL" \
    --out-dir "$SWEEP"
  mark_done sweep
fi
echo "[demo] the budget trade-off is drawn in $SWEEP/sweep.png"
