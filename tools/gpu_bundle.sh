#!/usr/bin/env bash
# Builds what tools/gpu_check.sh runs on a GPU machine (which has CUDA and PyTorch but
# no Rust toolchain), here, without a GPU: the cuda builds of the CLI, of the examples
# it times and of the parity tests, stripped and packed into one archive, with the
# PyTorch side's pieces. Everything goes to .gpu/ (ignored by git; a device run
# carries it).
#
#   STYLEGAN2_ADA=path/to/stylegan2-ada-pytorch tools/gpu_bundle.sh
#
# STYLEGAN2_ADA is a checkout of NVlabs/stylegan2-ada-pytorch (its dnnlib, torch_utils
# and training folders are copied, for tools/generator_speed.py); without it the
# PyTorch generator figures are skipped. The lpips package comes as a wheel from PyPI.
# The binaries share candle's PTX, so they are packed with a dictionary larger than
# one binary: the archive costs about one binary's compressed size plus the
# differences (a device run may carry 64 MiB, the repository included).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
source tools/cuda_env.sh
export CARGO_TARGET_DIR="$CUDA_WORK/target-release"
out=.gpu
rm -rf "$out"
mkdir -p "$out/bin" "$out/wheels"
started=$(date +%s)

build() { cargo build --release --locked --features cuda "$@"; }
build -p labelgan-cli
build --example quickstart --example generator_speed --example label_speed --example lpips_speed
cp "$CARGO_TARGET_DIR/release/labelgan" "$out/bin/"
for e in quickstart generator_speed label_speed lpips_speed; do
    cp "$CARGO_TARGET_DIR/release/examples/$e" "$out/bin/"
done
# The parity tests (they read LABELGAN_TEST_DEVICE), copied under names of their own.
test_bin() { # package, test target, name in the bundle
    local exe
    exe=$(cargo test --release --locked --features cuda -p "$1" --test "$2" --no-run --message-format=json \
        | python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == sys.argv[1]:
        print(m["executable"])' "$2")
    [ -n "$exe" ] || { echo "gpu_bundle: no test binary for $1 --test $2" >&2; exit 1; }
    cp "$exe" "$out/bin/$3"
}
test_bin labelgan-stylegan parity stylegan_parity
test_bin labelgan-lpips parity lpips_parity
test_bin labelgan-lpips inception inception_parity
strip "$out"/bin/*
du -sh "$out/bin"
tar -C "$out" -cf - bin | xz -T1 --lzma2=preset=6,dict=256MiB > "$out/bin.tar.xz"
rm -rf "$out/bin"

python3 -m pip download -q --no-deps --only-binary=:all: -d "$out/wheels" lpips==0.1.4
if [ -n "${STYLEGAN2_ADA:-}" ]; then
    mkdir -p "$out/stylegan2-ada-pytorch"
    cp -r "$STYLEGAN2_ADA"/dnnlib "$STYLEGAN2_ADA"/torch_utils "$STYLEGAN2_ADA"/training "$out/stylegan2-ada-pytorch/"
    find "$out/stylegan2-ada-pytorch" -name '__pycache__' -prune -exec rm -rf {} +
fi
# The tests find their fixtures by the path they were built at; gpu_check.sh links it.
printf '{"built_at": "%s", "commit": "%s", "seconds": %d}\n' "$repo" "$(git rev-parse HEAD)" \
    $(( $(date +%s) - started )) > "$out/bundle.json"
du -sh "$out"/* 
echo "bundle ready in $out/: run tools/gpu_check.sh on the GPU machine, carrying .gpu"
