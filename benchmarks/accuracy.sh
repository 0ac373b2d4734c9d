#!/usr/bin/env bash
# Issue-4 accuracy benchmark: MAIL, resnet18_late_fusion and resnet18_single (one ResNet-18 per dataset, heads
# independent) on PneumoniaMNIST + BreastMNIST, the same config/epochs/schedule, seeds 0,1,2 (one seed of every
# model first; resnet18_single's seeds 1 and 2 last, so a cut-short session still has the MAIL / late-fusion
# comparison). Results: $OUT/MODEL/seedS/. Finished runs are reused and interrupted ones resumed from their last
# epoch (`mailnet train --resume`), so an interrupted benchmark continues where it stopped.
#   EPOCHS=10 JOBS=2 bash benchmarks/accuracy.sh      # ~80 min on an idle 2-core CPU (2 runs at 1 thread each)
#   python benchmarks/accuracy_table.py benchmarks/work/acc10
# JOBS=2 runs two trainings side by side with one torch thread each: on 2 cores that is ~10-15% more throughput
# than one run on 2 threads (small convolutions scale poorly across threads).
set -u
EPOCHS=${EPOCHS:-10}
OUT=${OUT:-benchmarks/work/acc$EPOCHS}
JOBS=${JOBS:-2}
THREADS=${THREADS:-$(( $(nproc) / JOBS > 0 ? $(nproc) / JOBS : 1 ))}
export EPOCHS OUT
one() {  # one() MODEL SEED
  local model=$1 seed=$2 run="$OUT/$1/seed$2"
  if [ -f "$run/FINISHED" ]; then echo "reuse $run"; return; fi
  mkdir -p "$OUT/$model"
  if [ -f "$run/checkpoints/last.safetensors" ]; then
    echo "$(date -u +%FT%TZ) resume $model seed $seed"
    mailnet train --resume "$run" --device cpu --quiet >> "$run.log" 2>&1 || echo "FAILED $model seed $seed (see $run.log)"
  else
    rm -rf "$run"
    echo "$(date -u +%FT%TZ) start $model seed $seed"
    mailnet train --config configs/pneumonia_breast.yaml "model.name=$model" "train.epochs=$EPOCHS" "seed=$seed" \
      --run-dir "$run" --device cpu --quiet > "$run.log" 2>&1 || echo "FAILED $model seed $seed (see $run.log)"
  fi
  echo "$(date -u +%FT%TZ) done $model seed $seed"
}
export -f one
{ echo "mail 0"; echo "resnet18_late_fusion 0"; echo "resnet18_single 0"
  for seed in 1 2; do echo "mail $seed"; echo "resnet18_late_fusion $seed"; done
  echo "resnet18_single 1"; echo "resnet18_single 2"; } | OMP_NUM_THREADS=$THREADS xargs -P "$JOBS" -L 1 bash -c 'one "$0" "$1"'
