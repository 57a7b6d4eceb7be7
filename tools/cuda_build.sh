#!/usr/bin/env bash
# Compiles the whole workspace with `--features cuda` (library, CLI, tests, examples,
# benches) on a machine with no GPU and no system CUDA, checks that the CLI built this
# way refuses `--device cuda` in one line when there is no GPU, and frees the disk.
# CI runs it; so can anyone before a GPU run.
#
#   tools/cuda_build.sh            # CUDA_WORK (default target/cuda) is removed after
#   KEEP_CUDA=1 tools/cuda_build.sh
#
# It builds in the dev profile without optimisation or debug info: this checks that
# everything compiles and links, which needs no fast code. About 6 GB of disk while it
# runs. For binaries to take to a GPU, see tools/gpu_bundle.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/cuda_env.sh
export CARGO_TARGET_DIR="$CUDA_WORK/target"
started=$(date +%s)
cargo build --locked --workspace --all-targets --features cuda \
    --config 'profile.dev.opt-level=0' --config 'profile.dev.debug=false' \
    --config 'profile.dev.package."*".opt-level=0'
echo "cuda build: $(( $(date +%s) - started )) s, $(du -sh "$CUDA_WORK" | cut -f1) in $CUDA_WORK"

# No GPU here: with the stub libcuda on the loader path the binary starts, and
# `--device cuda` must fail with one line naming the device.
err="$CUDA_WORK/device_error.txt"
if LD_LIBRARY_PATH="$CUDA_HOME/lib:$CUDA_WORK/stubrt" "$CARGO_TARGET_DIR/debug/labelgan" generate \
    --weights assets/toy_generator.safetensors --count 1 --out "$CUDA_WORK/g.safetensors" --device cuda 2> "$err"; then
    echo "cuda_build: --device cuda succeeded on a machine without a GPU" >&2
    exit 1
fi
cat "$err"
grep -q 'cannot open the cuda device' "$err" || { echo "cuda_build: unexpected error text" >&2; exit 1; }
[ "$(grep -c . "$err")" -eq 1 ] || { echo "cuda_build: the error is not one line" >&2; exit 1; }

if [ "${KEEP_CUDA:-0}" != 1 ]; then
    rm -rf "$CUDA_WORK"
fi
echo "cuda build OK"
