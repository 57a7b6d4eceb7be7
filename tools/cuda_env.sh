# Sourced, not run: sets up the CUDA 13.0 toolkit from PyPI's wheels in $CUDA_WORK
# (default target/cuda) and exports what the cuda build reads. Needs python3 and a C
# compiler, nothing else: no GPU, no system CUDA.
#
#   CUDA_WORK=/tmp/cuda source tools/cuda_env.sh
#
# What the build needs, and why:
# - cudarc (dynamic linking, as candle-core asks) runs `nvcc --version` from PATH and
#   links -lcuda -lnvrtc -lcurand -lcublas -lcublasLt from $CUDA_HOME/lib; the wheels
#   ship only versioned library names, so the unversioned links are made here.
# - No wheel ships libcuda (the driver's own library): a link-time stub is built from
#   the toolkit's cuda.h, with soname libcuda.so.1 so that the real driver library is
#   what runs wherever there is one. The file is named libcuda.so, never .so.1, so the
#   loader does not pick it up by accident.
# - candle-kernels compiles its PTX with nvcc for CUDA_COMPUTE_CAP (90: the H200's
#   sm_90a), which it would otherwise ask nvidia-smi for.
set -euo pipefail
_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CUDA_WORK=$(mkdir -p "${CUDA_WORK:-$_repo/target/cuda}" && cd "${CUDA_WORK:-$_repo/target/cuda}" && pwd)
export CUDA_WORK
CUDA_HOME=$(python3 "$_repo/tools/cuda_toolkit.py" "$CUDA_WORK")
export CUDA_HOME

for _n in cudart cublas cublasLt curand nvrtc; do
    _f=$(cd "$CUDA_HOME/lib" && ls "lib$_n.so."* | grep -E "^lib$_n\.so\.[0-9]+$" | head -1)
    [ -n "$_f" ] || { echo "cuda_env: no lib$_n.so.N in $CUDA_HOME/lib" >&2; return 1; }
    ln -sf "$_f" "$CUDA_HOME/lib/lib$_n.so"
done

if [ ! -f "$CUDA_HOME/lib/libcuda.so" ]; then
    _tmp=$(mktemp -d)
    cc -E -P -I"$CUDA_HOME/include" -x c "$CUDA_HOME/include/cuda.h" > "$_tmp/cuda.i"
    # Every CUresult cu*() that cuda.h declares (after its _v2 renames), returning
    # CUDA_ERROR_STUB_LIBRARY (34); the two error-text calls say what this library is.
    grep -oE '\bCUresult +cu[A-Za-z0-9_]+ *\(' "$_tmp/cuda.i" | sed -E 's/CUresult +//; s/ *\($//' | sort -u > "$_tmp/names"
    {
        echo 'typedef int CUresult;'
        echo 'CUresult cuGetErrorString(CUresult e, const char **s) { (void)e; if (s) *s = "CUDA_ERROR_STUB_LIBRARY: a link-time stub of libcuda, not the NVIDIA driver"; return 0; }'
        echo 'CUresult cuGetErrorName(CUresult e, const char **s) { (void)e; if (s) *s = "CUDA_ERROR_STUB_LIBRARY"; return 0; }'
        grep -vxE 'cuGetErrorString|cuGetErrorName' "$_tmp/names" | while read -r _c; do echo "CUresult $_c(void) { return 34; }"; done
    } > "$_tmp/stub.c"
    cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$CUDA_HOME/lib/libcuda.so" "$_tmp/stub.c"
    rm -rf "$_tmp"
fi
# For running a cuda build on a machine without the driver (to see its error): point
# LD_LIBRARY_PATH at $CUDA_WORK/stubrt.
mkdir -p "$CUDA_WORK/stubrt"
ln -sf "$CUDA_HOME/lib/libcuda.so" "$CUDA_WORK/stubrt/libcuda.so.1"

export PATH="$CUDA_HOME/bin:$PATH"
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
export CUDAFORGE_THREADS=${CUDAFORGE_THREADS:-2}
unset _repo _n _f _tmp _c
