#!/usr/bin/env bash
# Scores every finished run of the S3GAN table once more, on its exported generator
# (the weight average with its standing batch-norm statistics): 5,000 generated images
# against 5,000 held-out toy objects, with per-class FID and class consistency. Writes
# one JSON line per run to studies/s3gan/final/VARIANT-seedS.json; runs already scored
# are skipped. Usage: bash tools/s3gan_final_scores.sh [LABELGAN_BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/labelgan}
study=studies/s3gan
mkdir -p "$study/final"
for dir in "$study"/runs/*/seed*; do
    variant=$(basename "$(dirname "$dir")")
    seed=$(basename "$dir")
    out="$study/final/$variant-$seed.json"
    # Finished: the last scores row is at the config's length (100 kimg).
    last=$( (tail -n 1 "$dir/scores.csv" 2>/dev/null || true) | cut -d, -f1)
    if [ "$last" != "100" ] || [ -s "$out" ] || [ ! -f "$dir/generator.safetensors" ]; then
        continue
    fi
    echo "== $variant $seed" >&2
    "$bin" metrics --a toyworld-classes:1001 --b "generator:$dir/generator.safetensors" \
        --extractor assets/toy_classifier.safetensors --count 5000 --resolution 32 > "$out.tmp"
    mv "$out.tmp" "$out"
done
