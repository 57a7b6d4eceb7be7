#!/usr/bin/env bash
# Compare GAN training speed, labelgan against PyTorch, in one run on one machine: the
# conditional CIFAR ResNet (hinge, SN in D) at the given widths and batch, 2 threads.
#   bash tools/compare_gan_speed.sh [G_WIDTH D_WIDTH BATCH STEPS]
# Needs `pip install torch` (PYTHON=path/to/python to choose the interpreter).
set -euo pipefail
gw=${1:-256}; dw=${2:-128}; batch=${3:-64}; steps=${4:-10}
py=${PYTHON:-python3}
cargo build --release --example compare_gan_speed >/dev/null 2>&1
ours=$(LABELGAN_THREADS=2 target/release/examples/compare_gan_speed --steps "$steps" \
  --set model.g_width="$gw" --set model.d_width="$dw" --set train.batch="$batch")
theirs=$("$py" tools/compare_gan_speed.py --threads 2 --g-width "$gw" --d-width "$dw" --batch "$batch" --steps "$steps")
echo "$ours"
echo "$theirs"
"$py" - "$ours" "$theirs" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"labelgan {a['images_per_second']:.1f} img/s, {b['framework']} {b['images_per_second']:.1f} img/s: "
      f"{a['images_per_second'] / b['images_per_second']:.2f}x")
PY
