#!/usr/bin/env bash
# The numeric tests (parity fixtures, property tests, gradient checks) of the crates
# with hand-written CPU kernels, run down the generic candle-op bodies that a GPU takes
# (LABELGAN_KERNELS=generic, docs/gpu.md). It runs the test binaries of a
# `cargo test --workspace` build as they are, so nothing is recompiled.
#
#   tools/test_generic.sh [CRATE ...]   # default: kernels lpips hypercolumn labeler stylegan inversion
set -euo pipefail
cd "$(dirname "$0")/.."
crates=("$@")
[ ${#crates[@]} -gt 0 ] || crates=(kernels lpips hypercolumn labeler stylegan inversion)
cargo test --workspace --no-run --message-format=json | python3 -c '
import json, os, subprocess, sys, time
crates = sys.argv[1:]
runs = []
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") != "compiler-artifact" or not m.get("executable") or not m["profile"]["test"]:
        continue
    d = os.path.dirname(m["manifest_path"])
    if os.path.basename(os.path.dirname(d)) == "crates" and os.path.basename(d) in crates:
        runs.append((os.path.basename(d), m["target"]["name"], m["executable"], d))
if not runs:
    sys.exit("test_generic: no test binaries found for " + " ".join(crates))
env = dict(os.environ, LABELGAN_KERNELS="generic")
failed = []
for crate, target, exe, d in sorted(runs):
    t = time.time()
    rc = subprocess.run([exe, "-q"], cwd=d, env=dict(env, CARGO_MANIFEST_DIR=d)).returncode
    status = "ok" if rc == 0 else "FAILED"
    print(f"generic kernels: {crate} {target}: {status} in {time.time() - t:.1f} s", flush=True)
    if rc != 0:
        failed.append(f"{crate} {target}")
if failed:
    sys.exit("test_generic: failed down the generic paths: " + ", ".join(failed))
' "${crates[@]}"
