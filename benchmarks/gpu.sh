#!/usr/bin/env bash
# One prepared GPU session (issues 5 and 6), sized for a short slot on one GPU: every stage has a deadline, so
# what finished is always packed and nothing waits on a stage that overruns.
#
#   bash benchmarks/gpu.sh         # GPU_OUT=benchmarks/work/gpu (gpu.log, speed_gpu.json, gpu_results.tar.gz)
#   tar xzf benchmarks/work/gpu/gpu_results.tar.gz -C DIR && python benchmarks/robustness_table.py DIR/attacks
#   DEVICE=cpu SKIP=speed ONLY=mail TRAIN_S=40 TOTAL=500 SUBSET=4 AA_SUBSET=4 STEPS=2 RESTARTS=1 AA_STEPS=2 \
#     TRAIN_EXTRA='data.subset.train=64 data.subset.val=32 data.subset.test=32' bash benchmarks/gpu.sh   # CPU dry run
#     (3.5 min on one thread; TRAIN_EXTRA is split at spaces, so write overrides without them)
#
# 1. smoke: a two-step CUDA training of Robust-MAIL, an EOT attack and AutoAttack on 8 rows (fails fast);
# 2. speed (issue 6): benchmarks/speed.py --device cuda, reference MAIL / fast MAIL / resnet18_late_fusion, training
#    step (batch 64) and batch-1 latency at 28 px (cifar stem) and 128 px (imagenet stem), side by side;
# 3. training (issue 5), all at once on the GPU, configs/pneumonia_breast_full.yaml (every training image every
#    epoch, batch 128, lr 1e-3 x0.1 at 50% / 75%), seed 0, float32 (train.amp=off): mail, resnet18_late_fusion,
#    resnet18_late_fusion PGD-trained (7 steps, 4/255), robust_mail, robust_mail without attention noise, and
#    robust_mail FGSM-RS-trained at 4/255; each run's epochs are sized from the measured step time and
#    train.time_limit stops it in time whatever happens (the best checkpoint so far is then evaluated). Runs
#    sharing one GPU are time-sliced (six at once on an H200: each ~7-14x slower than alone), so to train one
#    model long give it the GPU: ONLY=robust_mail SKIP=speed TRAIN_S=300;
# 4. attacks (issue 5), one chain per model, all at once: the reference protocol; then white-box attacks (PGD +
#    AutoAttack for the deterministic models, EOT-PGD + transfer from a frozen draw, then AutoAttack-rand and the
#    score-based Square attack, for the random ones), on the same seeded subset of the test split (SUBSET rows per
#    task) for every model.
#    Budgets of the random models run in the order R_EPS (default 4, 8, 2, 1) so the most telling one is done
#    first, each scored over R_EVAL_DRAWS forward passes. Runs trained elsewhere (CARRIED="label=RUN_DIR ...", the
#    label one of the six below) are attacked from the start, beside the trainings;
# 5. graphs (issue 6): the speed calls replayed as CUDA graphs (benchmarks/adhoc/cuda_graph_speed.py) in the last
#    GRAPHS_S seconds, alone on the GPU (the attacks' deadlines leave them free).
# Results (no weights) are packed into GPU_OUT/gpu_results.tar.gz after every stage; the log is GPU_OUT/gpu.log.
# Knobs (environment): TOTAL, TRAIN_S (training slot), DEVICE, SUBSET, STEPS, RESTARTS, EOT, R_STEPS, R_EOT,
# AA_STEPS, R_AA_STEPS, AA_SUBSET, R_EPS, R_AA_EPS (AutoAttack-rand budgets), R_EVAL_DRAWS, R_TRANSFER (surrogate
# of the random models' transfer attack: frozen-draw or expectation), R_SQUARE (queries of the random models' Square
# attack on their averaged output, after AutoAttack-rand; 0: none), ATTACK_BATCH, CONTENTION (assumed slow-down of
# the parallel runs; default their number), TRAIN_EXTRA (more overrides for every training, later ones win, e.g. a
# data subset for a CPU dry run), SKIP (stages to skip: smoke,speed,graphs), ONLY (comma list of the run labels to
# train; default all; an empty match trains nothing), CARRIED, GRAPHS_S.
# Needs: MAILNET_DATA (or ../shared/data) with the MedMNIST files, and torchattacks + medmnist importable; mailnet
# itself is run from src/ (no install). Measured session: BENCHMARKS.md, "On a GPU" (Speed and Robustness).
set -u
OUT=${GPU_OUT:-benchmarks/work/gpu}
W=${GPU_WORK:-/tmp/mailnet_gpu}
DEVICE=${DEVICE:-cuda}
TOTAL=${TOTAL:-575}
TRAIN_S=${TRAIN_S:-180}
SUBSET=${SUBSET:-200}
STEPS=${STEPS:-50}; RESTARTS=${RESTARTS:-2}; AA_STEPS=${AA_STEPS:-100}
R_STEPS=${R_STEPS:-20}; R_EOT=${R_EOT:-10}; R_AA_STEPS=${R_AA_STEPS:-20}; AA_SUBSET=${AA_SUBSET:-100}
EOT=${EOT:-$R_EOT}
R_EPS=${R_EPS:-4,8,2,1}; R_AA_EPS=${R_AA_EPS:-4}; R_EVAL_DRAWS=${R_EVAL_DRAWS:-8}; R_TRANSFER=${R_TRANSFER:-frozen-draw}
R_SQUARE=${R_SQUARE:-500}
CARRIED=${CARRIED:-}
GRAPHS_S=${GRAPHS_S:-100}
ATTACK_BATCH=${ATTACK_BATCH:-400}
TRAIN_EXTRA=${TRAIN_EXTRA:-}
SKIP=${SKIP:-}
ONLY=${ONLY:-}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
# A second call on a warm machine (say ONLY=robust_mail SKIP=smoke,speed TRAIN_S=300 after a first full session)
# starts afresh: the earlier work folder and results archive are moved aside, not trained over (mailnet train
# refuses a used run directory) and not overwritten.
STAMP=$(date -u +%Y%m%dT%H%M%S)
[ -e "$W" ] && mv "$W" "$W.$STAMP"
[ -e "$OUT/gpu_results.tar.gz" ] && mv "$OUT/gpu_results.tar.gz" "$OUT/gpu_results.$STAMP.tar.gz"
mkdir -p "$OUT" "$W/logs" "$W/bin"
printf '#!/bin/sh\nexec python -c "import sys; from mailnet.cli import main; sys.exit(main())" "$@"\n' > "$W/bin/mailnet"
chmod +x "$W/bin/mailnet"; export PATH="$W/bin:$PATH"
T0=$(date +%s); END=$((T0 + TOTAL))
left() { echo $((END - $(date +%s))); }
log() { echo "$(date -u +%FT%TZ) [+$(($(date +%s) - T0)) s] $*" | tee -a "$OUT/gpu.log"; }
pack() {  # everything small: run metrics, attack results, logs; never weights
  tar czf "$OUT/gpu_results.tar.gz.tmp" -C "$W" --exclude=checkpoints --exclude=bin --exclude='*.safetensors' . \
    && mv "$OUT/gpu_results.tar.gz.tmp" "$OUT/gpu_results.tar.gz"
}
trap pack EXIT

log "start: device $DEVICE, total ${TOTAL} s, work dir $W"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
  python -c "import torch, platform; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'gpu',
torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, 'python', platform.python_version())"
  nproc; } > "$W/env.txt" 2>&1
cat "$W/env.txt" | tee -a "$OUT/gpu.log"

# ---- 1. smoke ---------------------------------------------------------------------------------------------------
if [[ $SKIP != *smoke* ]]; then
  log "smoke"
  cat > "$W/smoke.yaml" <<'EOF'
name: smoke
model: {name: robust_mail, kwargs: {widths: [8, 16, 32, 64], stem: cifar}}
data:
  mode: unpaired
  size: 28
  equalize: none
  subset: {train: 32, val: 16, test: 16}
  modalities:
    - {name: pneumonia, source: medmnist, flag: pneumoniamnist, channels: 3}
    - {name: breast, source: medmnist, flag: breastmnist, channels: 3}
train: {epochs: 1, batch_size: 16, max_steps_per_epoch: 2}
eval: {mc_samples: 2, partner_draws: 1}
EOF
  if ! timeout 240 mailnet train --config "$W/smoke.yaml" --run-dir "$W/smoke" --device "$DEVICE" --quiet \
        --adv-train fgsm-rs --adv-eps 4/255 > "$W/logs/smoke_train.log" 2>&1 \
     || ! timeout 240 mailnet attack "$W/smoke" --attack reference,pgd,transfer,autoattack --eps 4 --steps 2 --restarts 1 \
        --eot 2 --aa-steps 2 --subset 8 --device "$DEVICE" --quiet --out "$W/smoke/attack" \
        > "$W/logs/smoke_attack.log" 2>&1; then
    log "SMOKE FAILED"; tail -n 30 "$W"/logs/smoke_*.log | tee -a "$OUT/gpu.log"; exit 1
  fi
  log "smoke passed"
fi

# ---- 2. speed (issue 6) -----------------------------------------------------------------------------------------
if [[ $SKIP != *speed* ]]; then
  log "speed"
  timeout 150 python benchmarks/speed.py --device "$DEVICE" --sizes 28,128 --train-iters 10 --latency-iters 30 \
    --train-warmup 3 --attack-iters 5 --json "$OUT/speed_gpu.json" > "$W/logs/speed.log" 2>&1 \
    || log "speed: FAILED or cut (see logs/speed.log)"
  grep " px " "$W/logs/speed.log" | tee -a "$OUT/gpu.log"
  pack
fi
GRAPHS=0; [ "$DEVICE" = cuda ] && [[ $SKIP != *graphs* ]] && GRAPHS=$GRAPHS_S

# ---- 4a. attacks of the carried runs, beside the trainings -----------------------------------------------------
attack() {  # label name [mailnet attack args...]: skipped when the run did not finish or no time is left
  local label=$1 name=$2; shift 2
  local t; t=$(( $(left) - 15 - GRAPHS ))
  if [ ! -f "$W/$label/FINISHED" ] || [ "$t" -lt 20 ]; then
    [ -d "$W/$label" ] && log "skip attack $label $name"; return
  fi
  log "attack $label $name (at most $t s)"
  timeout -k 30 "$t" mailnet attack "$W/$label" --subset "$SUBSET" --batch-size "$ATTACK_BATCH" --device "$DEVICE" --quiet \
    --out "$W/attacks/${label}__$name" "$@" < /dev/null > "$W/logs/attack_${label}__$name.log" 2>&1 \
    || log "attack $label $name: FAILED or cut at the deadline (SIGTERM: the budgets that finished are written)"
}
chain() {  # label: the whole attack chain of one run, by kind (Robust-MAIL variants are random models)
  local label=$1
  if [[ $label == robust_mail* ]]; then
    attack "$label" reference --attack reference --eps "$R_EPS" --eval-draws "$R_EVAL_DRAWS" --no-sanity
    attack "$label" pgd --attack pgd,transfer --eps "$R_EPS" --steps "$R_STEPS" --restarts 1 --eot "$EOT" \
      --eval-draws "$R_EVAL_DRAWS" --transfer-surrogate "$R_TRANSFER"
    attack "$label" autoattack --attack autoattack --eps "$R_AA_EPS" --aa-steps "$R_AA_STEPS" --eot "$EOT" \
      --eval-draws "$R_EVAL_DRAWS" --subset "$AA_SUBSET" --no-sanity
    [ "$R_SQUARE" -gt 0 ] && attack "$label" square --attack square --eps "$R_AA_EPS" --square-queries "$R_SQUARE" \
      --eot "$EOT" --eval-draws "$R_EVAL_DRAWS" --subset "$AA_SUBSET" --no-sanity
  else
    attack "$label" reference --attack reference --eps 1,2,4,8 --no-sanity
    attack "$label" pgd+autoattack --attack pgd,autoattack --eps 1,2,4,8 --steps "$STEPS" --restarts "$RESTARTS" \
      --aa-steps "$AA_STEPS"
  fi
}
mkdir -p "$W/attacks"
for item in $CARRIED; do  # a copy without the last checkpoint (weights + optimizer state are not needed to attack)
  label=${item%%=*}; src=${item#*=}
  mkdir -p "$W/$label" && tar cf - -C "$src" --exclude='last.*' . | tar xf - -C "$W/$label" \
    || { log "carried run $label: cannot copy $src"; continue; }
  log "carried run $label (from $src): attacks start now"
  chain "$label" &
done

# ---- 3. training (issue 5) --------------------------------------------------------------------------------------
# label | model overrides | adversarial training | cost of one step in units of a plain step of its model
RUNS="mail|model.name=mail||1
late_fusion|model.name=resnet18_late_fusion||1
late_fusion_pgd4|model.name=resnet18_late_fusion|--adv-train pgd --adv-eps 4/255 --adv-steps 7|8
robust_mail|model.name=robust_mail||2
robust_mail_nonoise|model.name=robust_mail model.kwargs.attention_noise=false||1.5
robust_mail_fgsmrs4|model.name=robust_mail|--adv-train fgsm-rs --adv-eps 4/255|4"
if [ -n "$ONLY" ]; then RUNS=$(grep -E "^(${ONLY//,/|})\|" <<< "$RUNS"); fi
[ -n "$CARRIED" ] && RUNS=$(grep -v -E "^($(for i in $CARRIED; do printf '%s|' "${i%%=*}"; done)@)\|" <<< "$RUNS")
# Runs sharing one GPU are time-sliced: on the H200 six at once each ran ~7-14x slower than alone (2026-11-28).
CONTENTION=${CONTENTION:-$(wc -l <<< "$RUNS")}
epochs_for() {  # label factor -> epochs that fit TRAIN_S at the measured speed (fallback: 30)
  python - "$OUT/speed_gpu.json" "$1" "$2" "$TRAIN_S" "$CONTENTION" <<'EOF'
import json, sys
path, label, factor, slot, contention = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
try:
    row = json.load(open(path))["sizes"]["28"]["train_step_b64"]
    step = row["resnet18_late_fusion" if label.startswith("late_fusion") else "mail_fast"]["median_ms"] / 1000
except (OSError, KeyError, ValueError):
    print(30); sys.exit()
epoch = 37 * 1.3 * step * factor * contention + 1.5  # 37 steps of batch 128 (~1.3 x a batch-64 step) + validation
print(max(3, min(100, int(slot / epoch))))
EOF
}
log "training (slot ${TRAIN_S} s)"
TRAIN_PIDS=()
while IFS='|' read -r label over adv factor; do
  [ -n "$label" ] || continue
  e=$(epochs_for "$label" "$factor")
  log "train $label: $e epochs"
  # shellcheck disable=SC2086
  timeout $((TRAIN_S + 120)) mailnet train --config configs/pneumonia_breast_full.yaml $over train.epochs="$e" \
    train.time_limit="$TRAIN_S" train.amp=off seed=0 $TRAIN_EXTRA $adv --run-dir "$W/$label" --device "$DEVICE" \
    --quiet < /dev/null > "$W/logs/train_$label.log" 2>&1 &
  TRAIN_PIDS+=($!)
done <<< "$RUNS"
[ ${#TRAIN_PIDS[@]} -gt 0 ] && wait "${TRAIN_PIDS[@]}"
for label in $(cut -d'|' -f1 <<< "$RUNS"); do
  python - "$W/$label" <<'EOF' | tee -a "$OUT/gpu.log"
import json, sys
from pathlib import Path
run = Path(sys.argv[1])
try:
    t = json.loads((run / "test_metrics.json").read_text())
    h = json.loads((run / "metrics.json").read_text())
except (OSError, ValueError):
    print(f"{run.name}: NOT FINISHED"); sys.exit()
tasks = ", ".join(f"{k} acc {v['acc']:.3f} auc {v['auc']:.3f} bal {v['bal_acc']:.3f}" for k, v in t["tasks"].items())
print(f"{run.name}: {t['epochs_run']} epochs ({t['stop_reason']}), best {t['best_epoch']}, "
      f"{sum(r['seconds'] for r in h):.0f} s; test {tasks}")
EOF
done
pack

# ---- 4b. attacks of the trained runs (issue 5) -----------------------------------------------------------------
for label in $(cut -d'|' -f1 <<< "$RUNS"); do chain "$label" & done
wait
for f in "$W"/logs/attack_*.log; do  # every budget that finished, also of an attack cut by its deadline
  [ -f "$f" ] && grep -E "^clean accuracy|eps=|sanity checks" "$f" | sed "s|^|$(basename "$f" .log): |" >> "$OUT/gpu.log"
done
python benchmarks/robustness_table.py "$W/attacks" >> "$OUT/gpu.log" 2>&1
pack

# ---- 5. graphs (issue 6): how much of MAIL's GPU gap is launch overhead ----------------------------------------
if [ "$GRAPHS" -gt 0 ] && [ "$(left)" -gt 30 ]; then
  t=$(( $(left) - 5 )); [ "$t" -gt "$GRAPHS" ] && t=$GRAPHS
  log "graphs (at most $t s)"
  timeout "$t" python benchmarks/adhoc/cuda_graph_speed.py --json "$OUT/cuda_graph.json" > "$W/logs/cuda_graph.log" \
    2>&1 || log "cuda graphs: FAILED or cut (see logs/cuda_graph.log)"
  grep " px " "$W/logs/cuda_graph.log" | tee -a "$OUT/gpu.log"
fi
log "done ($(left) s to spare)"
