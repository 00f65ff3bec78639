#!/usr/bin/env bash
# `dlbatch train --nproc` on the GPUs of one machine (NCCL), as docs/distributed.md describes:
# a tiny generated dataset, the torch backend on cuda, one process per visible GPU (at least 1),
# then the same job resumed with more epochs. Run from the repository root on a machine with
# CUDA and torch: `bash tests/distributed/dl_train_gpu_smoke.sh [OUTDIR]`. Prints samples/s.
set -euo pipefail
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
DL=("$PY" -m dlbatch.cli.app)
WORK=${1:-$(mktemp -d)}
mkdir -p "$WORK" && cd "$WORK"
GPUS=$("$PY" -c "import torch; print(max(1, torch.cuda.device_count()))")
"${DL[@]}" data synth classification data --num 512 --width 64 --height 64 --seed 1 >/dev/null
"${DL[@]}" model create classification -o m.onnx --dataset data --backbone compact --width 64 --height 64 \
  --set batch_size=32 >/dev/null
"${DL[@]}" train m.onnx data --out run --backend torch --device cuda --nproc "$GPUS" --epochs 2
"${DL[@]}" train m.onnx data --out run --backend torch --device cuda --nproc "$GPUS" --epochs 3 --resume
"$PY" - "$GPUS" <<'EOF'
import json, sys
records = [json.loads(line) for line in open("run/log.jsonl")]
epochs = [r for r in records if r["type"] == "epoch"]
assert [r["epoch"] for r in epochs] == [1, 2, 3], [r["epoch"] for r in epochs]
state = json.load(open("run/state/state.json"))
assert state["arguments"]["world_size"] == int(sys.argv[1]) and state["epoch"] == 3
per_update = 32 * int(sys.argv[1])
updates = epochs[1]["step"] - epochs[0]["step"]  # epoch 2: warm (epoch 1 and the resumed 3 start cold)
print(f"nccl x {sys.argv[1]}: epoch 2 {updates} updates of {per_update} samples in {epochs[1]['seconds']:.2f} s "
      f"= {updates * per_update / epochs[1]['seconds']:.0f} samples/s")
EOF
