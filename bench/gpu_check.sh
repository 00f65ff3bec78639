#!/usr/bin/env bash
# On a lent GPU machine (the `device` tool): the CUDA-marked tests, then single-GPU training
# throughput of the torch backend against a hand-written PyTorch loop of the same network.
# Packages that machine lacks travel as wheels in .whl/ (array-api-compat); dlbatch itself is
# used from the source tree. Results land in $OUT (pytest_cuda.txt, bench_cuda.jsonl, gpu.txt).
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD
OUT=${OUT:-/tmp/gpu_check}; mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } | tee "$OUT/gpu.txt"
# one pytest process per file: a crash in one (it printed nothing once) cannot hide the others
for f in tests/test_backend_parity.py tests/losses/test_focal.py tests/losses/test_huber.py \
    tests/backends/test_torch_backend.py tests/backends/test_ops_issue15_torch.py \
    tests/backends/test_ops_issue15_exported.py tests/backends/test_bfloat16.py tests/core/test_runtime.py; do
  timeout "${TEST_TIMEOUT:-120}" python3 -m pytest -q -m cuda -p no:cacheprovider -p no:warnings "$f" \
    > "$OUT/pytest_$(basename "$f" .py).txt" 2>&1
  echo "$f rc=$? $(tail -1 "$OUT/pytest_$(basename "$f" .py).txt")"
done | tee "$OUT/pytest_cuda.txt"
python3 bench/cuda_grad_diagnosis.py 2>&1 | tee "$OUT/cuda_grad_diagnosis.txt"
# model backbone batch side steps precision
CASES=${CASES-"classification resnet18 64 224 30 float32
classification resnet18 64 224 30 bfloat16
segmentation resnet18 16 256 20 float32
detection resnet18 16 512 20 float32"}
echo "$CASES" | while read -r model backbone batch side steps precision; do
  [ -z "$model" ] && continue
  for impl in torch_train handwritten_train; do
    [ "$model" = detection ] && [ "$precision" = bfloat16 ] && continue
    timeout 120 python3 bench/step_case.py --impl "$impl" --model "$model" --backbone "$backbone" \
      --batch "$batch" --side "$side" --steps "$steps" --warmup 5 --device cuda --threads 16 \
      --precision "$precision" 2>&1 | tail -1
  done
done | tee "$OUT/bench_cuda.jsonl"
