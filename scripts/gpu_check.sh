#!/usr/bin/env bash
# GPU acceptance check: on a machine with one NVIDIA GPU, in under 8 minutes (H200-class; slower GPUs more),
#   every suite's smoke speed case on cuda in float32 (with --profile on one case) and in bfloat16,
#   the CUDA-event vs torch.utils.benchmark.Timer cross-check, a 1-process NCCL torchrun case,
#   one proxy quality case on the GPU,
# then a PASS/FAIL summary decided from the ordinary records (exit 1 on any FAIL, 2 on bad input).
# Usage: scripts/gpu_check.sh [OUT]   (default results/gpu-check)
set -u -o pipefail
OUT="${1:-results/gpu-check}"
M="python -m milestones.harness"
T=180  # per-case timeout (s)
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_check: torch sees no CUDA device')" || exit 2
start=$(date +%s)
# A failed case is a record (exit 1 from run); the summary decides, so keep going.
$M run --scale smoke --kind speed --device cuda --dtype float32 --timeout $T --out "$OUT"
$M run --scale smoke --kind speed --device cuda --dtype bfloat16 --timeout $T --out "$OUT"
$M run cifar-resnet20-smoke --scale smoke --kind speed --device cuda --dtype float32 --profile --timeout $T --out "$OUT"
$M run parallel-alexnet-smoke --scale smoke --kind speed --device cuda --nproc 1 --nnodes 1 --timeout $T --out "$OUT"
$M run resnet-degradation --scale proxy --kind quality --device cuda --seeds 0 --timeout 300 --out "$OUT"
python -m milestones.harness.gpu_check crosscheck "$OUT" || exit $?
echo "gpu_check: measured in $(( $(date +%s) - start )) s"
python -m milestones.harness.gpu_check summary "$OUT"
