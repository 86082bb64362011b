#!/usr/bin/env bash
# Issue #4's "done when" run: scripted BC data and the context-distillation baseline,
# a few minutes of SFT of the default model on each, then the base / BC-SFT / CD-SFT
# models evaluated on the dev split and on StrongREJECT + AdvBench from ../shared/data.
#
#   bash experiments/bc_before_after.sh [OUT_DIR]      (default runs/bc_before_after)
#
# Every stage is resumable: rerun the same command after an interruption.
# SFT settings: experiments/bc_sft.yaml; extra `--set key=value` via SFT_SET (e.g. SFT_SET="max_steps=144").
# Evaluation size: EVAL_LIMIT items per public benchmark (defaults: the README's run).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/bc_before_after}
RW=${RULEWISE:-.venv/bin/rulewise}
SHARED=${SHARED_DATA:-../shared/data}
LIMIT=${EVAL_LIMIT:-40}         # per public benchmark; the dev split is used whole

$RW data prompts --out "$OUT/data/prompts"
$RW data bc --prompts "$OUT/data/prompts/train.jsonl" --teacher scripted --out "$OUT/data/bc.jsonl"
$RW data context-distill --prompts "$OUT/data/prompts/train.jsonl" --teacher scripted --out "$OUT/data/cd.jsonl"

SFT=(train sft --config experiments/bc_sft.yaml)
for assignment in ${SFT_SET:-}; do SFT+=(--set "$assignment"); done
$RW "${SFT[@]}" --data "$OUT/data/bc.jsonl" --out "$OUT/sft-bc"

BENCH=(--bench "dev:custom=$OUT/data/prompts/dev.jsonl")
if [ -d "$SHARED" ]; then
  BENCH+=(--bench "strongreject@$LIMIT=$SHARED/strongreject/strongreject_dataset.csv"
          --bench "advbench@$LIMIT=$SHARED/advbench/harmful_behaviors.csv")
fi
$RW eval --model "$OUT/sft-bc" "${BENCH[@]}" --out "$OUT/eval-sft-bc"
$RW "${SFT[@]}" --data "$OUT/data/cd.jsonl" --out "$OUT/sft-cd"
# The baseline learnt to answer without the tool (rules were only in the teacher's context).
$RW eval --model "$OUT/sft-cd" --no-tools "${BENCH[@]}" --out "$OUT/eval-sft-cd"
$RW eval --model default "${BENCH[@]}" --out "$OUT/eval-base"
$RW report "$OUT/eval-base" "$OUT/eval-sft-bc" "$OUT/eval-sft-cd" --out "$OUT/report"
