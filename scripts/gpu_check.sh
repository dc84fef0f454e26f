#!/usr/bin/env bash
# GPU acceptance check, second version, on a machine with one NVIDIA GPU:
#   paper-size speed configs at the paper's batch in the field preset of execution modes (eager fp32, tf32,
#   amp-bf16 + channels-last, amp-bf16 + torch.compile; `python -m milestones.harness.gpu_check plan` lists
#   them), the CUDA-event vs torch.utils.benchmark.Timer cross-check on paper-size steps, and (full only)
#   a --profile kernel table, a 1-process NCCL torchrun case and a proxy quality case on the GPU;
# then a PASS/FAIL summary decided from the ordinary records, the execution-mode table and the published
# throughput anchors (exit 1 on any FAIL, 2 on bad input).
# Targets (not yet measured on a GPU with this version): full under 10 minutes, --quick under 5 on H100/H200.
# Usage: scripts/gpu_check.sh [--quick] [OUT]   (default results/gpu-check)
set -u -o pipefail
QUICK=""
if [ "${1:-}" = "--quick" ]; then QUICK="--quick"; shift; fi
OUT="${1:-results/gpu-check}"
M="python -m milestones.harness"
T=240  # per-case timeout (s): a compiled ResNet-50 case compiles its train and infer steps
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_check: torch sees no CUDA device')" || exit 2
start=$(date +%s)
# A failed case is a record (exit 1 from run); the summary decides, so keep going.
python -m milestones.harness.gpu_check plan $QUICK | while read -r config modes; do
  $M run "$config" --scale paper --kind speed --device cuda --modes "$modes" --timeout $T --out "$OUT" < /dev/null
done
if [ -z "$QUICK" ]; then
  $M run cifar-resnet20-smoke --scale smoke --kind speed --device cuda --modes amp-bf16+channels-last --profile \
    --timeout $T --out "$OUT"
  $M run parallel-alexnet-smoke --scale smoke --kind speed --device cuda --nproc 1 --nnodes 1 --timeout $T --out "$OUT"
  $M run resnet-degradation --scale proxy --kind quality --device cuda --seeds 0 --timeout 300 --out "$OUT"
fi
python -m milestones.harness.gpu_check crosscheck "$OUT" $QUICK || exit $?
echo "gpu_check: measured in $(( $(date +%s) - start )) s"
python -m milestones.harness.gpu_check summary "$OUT" $QUICK
