#!/usr/bin/env bash
# The GPU run, as one prepared script: on a machine with an NVIDIA GPU, CUDA 13 and
# PyTorch (no Rust needed), from the repository root with .gpu/ made by
# tools/gpu_bundle.sh. Runs the parity tests on cuda, the quickstart, and the speed
# figures beside PyTorch on the same GPU, and writes one JSON of figures to
# ${OUT:-.gpu}/gpu_check.json (logs beside it).
#
#   tools/gpu_check.sh                     # on the GPU machine
#   DEVICE=cpu QUICK=1 BATCHES=1 CUDA_WORK=target/cuda tools/gpu_check.sh
#                                        # a dry run of the script itself, without a GPU
#
# QUICK=1 runs the quickstart at CI scale instead of its default size; BATCHES (default
# "1 8 32") the generator batches timed. Each step has a time limit, a failed step is
# recorded and the next one goes on, and no step runs past DEADLINE seconds from the
# start (default 540, inside a device run's 600): the JSON is written in any case.
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
OUTDIR=${OUT:-.gpu}
mkdir -p "$OUTDIR"
LOG="$OUTDIR/gpu_check.log"
: > "$LOG"
STEPS="$OUTDIR/steps.jsonl"
: > "$STEPS"
say() { echo "== $*" | tee -a "$LOG"; }
START=$(date +%s)
DEADLINE=${DEADLINE:-540}

# 1. The binaries, and the path they were built at (the tests read their fixtures there).
[ -f .gpu/bin.tar.xz ] || { echo "gpu_check: no .gpu/bin.tar.xz: run tools/gpu_bundle.sh first (and carry .gpu)" >&2; exit 1; }
BIN=$(mktemp -d)/bin
tar -C "$(dirname "$BIN")" -xJf .gpu/bin.tar.xz
built_at=$(python3 -c 'import json; print(json.load(open(".gpu/bundle.json"))["built_at"])')
if [ "$(pwd)" != "$built_at" ] && [ ! -e "$built_at" ]; then
    mkdir -p "$(dirname "$built_at")" && ln -s "$(pwd)" "$built_at"
fi

# 2. CUDA's libraries: the system toolkit's and PyTorch's NVIDIA wheels'.
libdirs=$(python3 - <<'PY'
import glob, os
dirs = ["/usr/local/cuda/lib64", "/usr/local/nvidia/lib64", "/usr/lib/x86_64-linux-gnu"]
try:
    import nvidia
    for root in nvidia.__path__:
        dirs += sorted(glob.glob(os.path.join(root, "*", "lib")) + glob.glob(os.path.join(root, "cu13", "lib")))
except ImportError:
    pass
print(":".join(d for d in dirs if os.path.isdir(d)))
PY
)
# A dry run without a GPU: CUDA_WORK is the wheels' toolkit and the libcuda stub that
# tools/cuda_env.sh set up (the binaries need libcuda.so.1 to start at all).
if [ -n "${CUDA_WORK:-}" ]; then
    libdirs="$libdirs:$CUDA_WORK/site/nvidia/cu13/lib:$CUDA_WORK/stubrt"
fi
export LD_LIBRARY_PATH="$libdirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if ldd "$BIN/labelgan" | grep -q "not found"; then
    echo "gpu_check: libraries not found: $(ldd "$BIN/labelgan" | grep 'not found' | tr -s ' \t\n' ' ')" >&2
    exit 1
fi
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)
say "device $DEVICE (${gpu:-no nvidia-smi}), binaries from commit $(python3 -c 'import json; print(json.load(open(".gpu/bundle.json"))["commit"])')"

# step NAME LIMIT_S CMD...: runs CMD with a time limit, keeps its output in the log and
# records {name, rc, seconds, last JSON line of its output (if any)}.
step() {
    local name=$1 limit=$2; shift 2
    local t0 out rc left
    left=$(( DEADLINE - ($(date +%s) - START) ))
    if [ "$left" -lt 10 ]; then
        say "$name: skipped, past the deadline"
        echo "{\"name\": \"$name\", \"rc\": null, \"seconds\": 0, \"result\": \"skipped: past the deadline\"}" >> "$STEPS"
        return
    fi
    [ "$limit" -le "$left" ] || limit=$left
    say "$name (limit $limit s): $*"
    t0=$(date +%s.%N)
    out=$(timeout "$limit" "$@" 2>> "$LOG")
    rc=$?
    echo "$out" >> "$LOG"
    python3 - "$name" "$rc" "$t0" "$(date +%s.%N)" "$out" >> "$STEPS" <<'PY'
import json, sys
name, rc, t0, t1, out = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
last = None
for line in reversed(out.splitlines()):
    try:
        last = json.loads(line)
        break
    except ValueError:
        continue
print(json.dumps({"name": name, "rc": rc, "seconds": round(t1 - t0, 2), "result": last}))
PY
    [ "$rc" -eq 0 ] || say "$name: FAILED (exit $rc$([ "$rc" -eq 124 ] && echo ', its time limit'))"
}

# 3. Parity with the references, on the device.
export LABELGAN_TEST_DEVICE=$DEVICE
for t in stylegan_parity lpips_parity inception_parity; do
    step "$t" 300 "$BIN/$t" --test-threads 1
done
unset LABELGAN_TEST_DEVICE

# 4. Speed beside PyTorch on the same device: the generator at 256 px, the labelling,
#    LPIPS forward + backward.
ref=.gpu/stylegan2-ada-pytorch
for b in ${BATCHES:-1 8 32}; do
    step "generator_b$b" 120 "$BIN/generator_speed" --device "$DEVICE" --resolution 256 --batch "$b" --repeats 5
    if [ -d "$ref" ]; then
        step "generator_pytorch_b$b" 300 python3 tools/generator_speed.py --official "$ref" --device "$DEVICE" --resolution 256 --batch "$b" --repeats 5
    fi
done
for r in 256 512; do
    step "label_$r" 120 "$BIN/label_speed" --device "$DEVICE" --resolution "$r" --channel-base $((64 * r)) --repeats 5
done
step lpips 120 "$BIN/lpips_speed" --device "$DEVICE" --size 256 --repeats 5
if ls .gpu/wheels/lpips-*.whl > /dev/null 2>&1; then
    site=$(mktemp -d)
    python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" .gpu/wheels/*.whl >> "$LOG" 2>&1
    PYTHONPATH="$site" step lpips_pytorch 120 python3 tools/lpips_speed.py --device "$DEVICE" --size 256 --repeats 5
fi

# 5. The quickstart (goal on a GPU: 2 minutes or less), last: it takes the most time.
qs=(--out "$OUTDIR/quickstart" --device "$DEVICE")
if [ "${QUICK:-0}" = 1 ]; then
    qs+=(--labelled 8 --test 50 --real 100 --synthetic 45 --unet-steps 20 --labeler-pixels 256 --labeler-epochs 2 --refine-steps 20 --val 20)
fi
rm -rf "$OUTDIR/quickstart"
step quickstart 420 "$BIN/quickstart" "${qs[@]}"

# 6. One JSON: every step, and the ratios and goals read from them.
python3 - "$STEPS" "$DEVICE" "${gpu:-}" > "$OUTDIR/gpu_check.json" <<'PY'
import json, sys
steps = [json.loads(l) for l in open(sys.argv[1])]
by = {s["name"]: s for s in steps}
def res(name, key):
    s = by.get(name)
    return s["result"].get(key) if s and s["rc"] == 0 and isinstance(s.get("result"), dict) else None

def generator_flops(resolution=256, channel_base=16384, w_dim=512):
    # Multiply-adds x 2 of one image's synthesis convolutions (3x3 and toRGB 1x1) and
    # their style affines; the mapping network's 8 FC layers.
    ch = lambda r: min(channel_base // r, 512)
    f = 8 * 2 * w_dim * w_dim
    r, cin = 4, ch(4)
    f += 2 * 9 * cin * ch(4) * 16 + 2 * cin * 3 * 16
    while r < resolution:
        r *= 2
        c = ch(r)
        f += 2 * 9 * cin * c * r * r + 2 * 9 * c * c * r * r + 2 * c * 3 * r * r
        f += 2 * w_dim * (cin + 2 * c)
        cin = c
    return f

FP32_PEAK = {"H200": 67e12, "H100": 67e12, "A100": 19.5e12}
peak = next((v for k, v in FP32_PEAK.items() if k in sys.argv[3]), None)
summary = {"device": sys.argv[2], "gpu": sys.argv[3], "steps": steps}
parity = [by[n]["rc"] == 0 for n in ("stylegan_parity", "lpips_parity", "inception_parity") if n in by]
summary["parity_passed"] = all(parity) and len(parity) == 3
q = by.get("quickstart")
summary["quickstart_s"] = q["seconds"] if q and q["rc"] == 0 else None
summary["quickstart_goal_met"] = summary["quickstart_s"] is not None and summary["quickstart_s"] <= 120
flops = generator_flops()
for b in (1, 8, 32):
    ours, theirs = res(f"generator_b{b}", "s_per_image"), res(f"generator_pytorch_b{b}", "s_per_image")
    summary[f"generator_b{b}_s_per_image"] = ours
    summary[f"generator_pytorch_b{b}_s_per_image"] = theirs
    summary[f"generator_b{b}_ratio"] = round(ours / theirs, 3) if ours and theirs else None
    if ours and peak:
        summary[f"generator_b{b}_fp32_peak_fraction"] = round(flops / ours / peak, 4)
summary["generator_goal_met"] = (summary["generator_b32_ratio"] or 9e9) <= 1.0
for r in (256, 512):
    s = res(f"label_{r}", "s_per_image")
    summary[f"label_{r}_images_per_s"] = round(1 / s, 1) if s else None
summary["label_goal_met"] = (summary["label_256_images_per_s"] or 0) >= 100
ours, theirs = res("lpips", "s_fwd_bwd"), res("lpips_pytorch", "s_fwd_bwd")
summary["lpips_s"], summary["lpips_pytorch_s"] = ours, theirs
summary["lpips_ratio"] = round(ours / theirs, 3) if ours and theirs else None
print(json.dumps(summary, indent=1))
PY
say "figures: $OUTDIR/gpu_check.json"
python3 -c 'import json, sys; s = json.load(open(sys.argv[1])); print(json.dumps({k: v for k, v in s.items() if k != "steps"}))' "$OUTDIR/gpu_check.json"
