#!/usr/bin/env bash
# The generator's forward time, labelgan beside the official stylegan2-ada-pytorch
# generator (fp32, const noise, random weights), alternating runs on one machine, and
# the median of each side and of the pairs' ratios:
#   OFFICIAL=path/to/stylegan2-ada-pytorch bash tools/generator_side_by_side.sh [PAIRS] [RESOLUTION:CHANNEL_BASE:BATCH ...]
# Defaults: 3 pairs of 256:16384:1 256:16384:8 64:16384:1 64:16384:8. Both sides use
# 2 threads. Needs torch (PYTHON=path/to/python to choose the interpreter) and a
# checkout of https://github.com/NVlabs/stylegan2-ada-pytorch (with its `requests`
# dependency installed).
set -euo pipefail
pairs=${1:-3}; shift || true
cases=("$@"); [ ${#cases[@]} -gt 0 ] || cases=(256:16384:1 256:16384:8 64:16384:1 64:16384:8)
py=${PYTHON:-python3}
: "${OFFICIAL:?set OFFICIAL to a stylegan2-ada-pytorch checkout}"
cargo build --release --example generator_speed >/dev/null 2>&1
log=$(mktemp)
for c in "${cases[@]}"; do
  IFS=: read -r res cb batch <<<"$c"
  for _ in $(seq "$pairs"); do
    (cd tools && "$py" generator_speed.py --official "$OFFICIAL" --threads 2 \
      --resolution "$res" --channel-base "$cb" --batch "$batch" --repeats 3) | tee -a "$log"
    LABELGAN_THREADS=2 target/release/examples/generator_speed \
      --resolution "$res" --channel-base "$cb" --batch "$batch" --repeats 3 | tee -a "$log"
  done
done
"$py" - "$log" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
cases = {}
for r in rows:
    key = (r["resolution"], r["channel_base"], r["batch"])
    cases.setdefault(key, {"theirs": [], "ours": []})["theirs" if "impl" in r else "ours"].append(r["s_per_image"])
print("| resolution | channel_base | batch | PyTorch s/image | labelgan s/image | ratio per pair | median ratio |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for (res, cb, b), v in cases.items():
    ratios = [o / t for o, t in zip(v["ours"], v["theirs"])]
    print(f"| {res} | {cb} | {b} | {', '.join(f'{t:.3f}' for t in v['theirs'])} | "
          f"{', '.join(f'{o:.3f}' for o in v['ours'])} | {', '.join(f'{q:.2f}' for q in ratios)} | "
          f"**{statistics.median(ratios):.2f}x** |")
PY
rm -f "$log"
