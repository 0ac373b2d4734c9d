#!/usr/bin/env bash
# Issue-4 accuracy benchmark: MAIL, resnet18_late_fusion and resnet18_single (one ResNet-18 per dataset, heads
# independent) on PneumoniaMNIST + BreastMNIST, the same config/epochs/schedule, seeds 0,1,2 (one seed of every
# model first, so a cut-short session still has a comparison). Results: benchmarks/work/acc/MODEL/seedS/.
# Summarise with: python benchmarks/accuracy_table.py
set -u
EPOCHS=${EPOCHS:-4}
OUT=${OUT:-benchmarks/work/acc}
for seed in 0 1 2; do
  for model in mail resnet18_late_fusion resnet18_single; do
    run="$OUT/$model/seed$seed"
    if [ -f "$run/FINISHED" ]; then echo "reuse $run"; continue; fi
    rm -rf "$run"
    echo "$(date -u +%FT%TZ) start $model seed $seed"
    mailnet train --config configs/pneumonia_breast.yaml "model.name=$model" "train.epochs=$EPOCHS" "seed=$seed" \
      --run-dir "$run" --device cpu --quiet > "$run.log" 2>&1 || echo "FAILED $model seed $seed (see $run.log)"
    echo "$(date -u +%FT%TZ) done $model seed $seed"
  done
done
