#!/usr/bin/env bash
# Issue #4's "done when" run: scripted BC data and the context-distillation baseline,
# a few minutes of SFT of the default model on each, then the base / BC-SFT / CD-SFT
# models evaluated on the dev split and on StrongREJECT + AdvBench from ../shared/data.
#
#   bash experiments/bc_before_after.sh [OUT_DIR]      (default runs/bc_before_after)
#
# Every stage is resumable: rerun the same command after an interruption.
# Sizes can be changed through the environment (defaults: the README's run).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/bc_before_after}
RW=${RULEWISE:-.venv/bin/rulewise}
SHARED=${SHARED_DATA:-../shared/data}
STEPS=${SFT_STEPS:-36}          # 36 steps x batch 4 = 144 trajectories (a quarter of an epoch)
LR=${SFT_LR:-2e-4}
LIMIT=${EVAL_LIMIT:-40}         # per public benchmark; the dev split is used whole

$RW data prompts --out "$OUT/data/prompts"
$RW data bc --prompts "$OUT/data/prompts/train.jsonl" --teacher scripted --out "$OUT/data/bc.jsonl"
$RW data context-distill --prompts "$OUT/data/prompts/train.jsonl" --teacher scripted --out "$OUT/data/cd.jsonl"

SFT_SET=(--set max_steps="$STEPS" --set batch_size=4 --set learning_rate="$LR" --set warmup=0.1 --set save_steps=12)
$RW train sft --config configs/sft.yaml --data "$OUT/data/bc.jsonl" --out "$OUT/sft-bc" "${SFT_SET[@]}"

BENCH=(--bench "dev:custom=$OUT/data/prompts/dev.jsonl")
if [ -d "$SHARED" ]; then
  BENCH+=(--bench "strongreject@$LIMIT=$SHARED/strongreject/strongreject_dataset.csv"
          --bench "advbench@$LIMIT=$SHARED/advbench/harmful_behaviors.csv")
fi
$RW eval --model "$OUT/sft-bc" "${BENCH[@]}" --out "$OUT/eval-sft-bc"
$RW train sft --config configs/sft.yaml --data "$OUT/data/cd.jsonl" --out "$OUT/sft-cd" "${SFT_SET[@]}"
# The baseline learnt to answer without the tool (rules were only in the teacher's context).
$RW eval --model "$OUT/sft-cd" --no-tools "${BENCH[@]}" --out "$OUT/eval-sft-cd"
$RW eval --model default "${BENCH[@]}" --out "$OUT/eval-base"
$RW report "$OUT/eval-base" "$OUT/eval-sft-bc" "$OUT/eval-sft-cd" --out "$OUT/report"
