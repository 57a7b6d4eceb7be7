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
# It leaves the caller's shell options alone (it may be sourced by hand): each step
# checks itself and a failure returns 1 with a line saying which.
_labelgan_cuda_env() {
    local repo work home n f tmp
    repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd) || return 1
    work=${CUDA_WORK:-$repo/target/cuda}
    mkdir -p "$work" && work=$(cd "$work" && pwd) || { echo "cuda_env: cannot make $work" >&2; return 1; }
    home=$(python3 "$repo/tools/cuda_toolkit.py" "$work") || return 1

    for n in cudart cublas cublasLt curand nvrtc; do
        f=$(cd "$home/lib" && ls "lib$n.so."* 2>/dev/null | grep -E "^lib$n\.so\.[0-9]+$" | head -1)
        [ -n "$f" ] || { echo "cuda_env: no lib$n.so.N in $home/lib" >&2; return 1; }
        ln -sf "$f" "$home/lib/lib$n.so" || return 1
    done

    if [ ! -f "$home/lib/libcuda.so" ]; then
        tmp=$(mktemp -d) || return 1
        cc -E -P -I"$home/include" -x c "$home/include/cuda.h" > "$tmp/cuda.i" \
            || { echo "cuda_env: cannot preprocess $home/include/cuda.h" >&2; rm -rf "$tmp"; return 1; }
        # Every CUresult cu*() that cuda.h declares (after its _v2 renames), returning
        # CUDA_ERROR_STUB_LIBRARY (34); the two error-text calls say what this library is.
        grep -oE '\bCUresult +cu[A-Za-z0-9_]+ *\(' "$tmp/cuda.i" | sed -E 's/CUresult +//; s/ *\($//' | sort -u > "$tmp/names"
        {
            echo 'typedef int CUresult;'
            echo 'CUresult cuGetErrorString(CUresult e, const char **s) { (void)e; if (s) *s = "CUDA_ERROR_STUB_LIBRARY: a link-time stub of libcuda, not the NVIDIA driver"; return 0; }'
            echo 'CUresult cuGetErrorName(CUresult e, const char **s) { (void)e; if (s) *s = "CUDA_ERROR_STUB_LIBRARY"; return 0; }'
            grep -vxE 'cuGetErrorString|cuGetErrorName' "$tmp/names" | while read -r c; do echo "CUresult $c(void) { return 34; }"; done
        } > "$tmp/stub.c"
        cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$home/lib/libcuda.so" "$tmp/stub.c" \
            || { echo "cuda_env: cannot build the libcuda stub" >&2; rm -rf "$tmp"; return 1; }
        rm -rf "$tmp"
    fi
    # For running a cuda build on a machine without the driver (to see its error): point
    # LD_LIBRARY_PATH at $CUDA_WORK/stubrt.
    mkdir -p "$work/stubrt" && ln -sf "$home/lib/libcuda.so" "$work/stubrt/libcuda.so.1" || return 1

    export CUDA_WORK=$work CUDA_HOME=$home PATH="$home/bin:$PATH"
    export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
    export CUDAFORGE_THREADS=${CUDAFORGE_THREADS:-2}
}
_labelgan_cuda_env || { unset -f _labelgan_cuda_env; return 1; }
unset -f _labelgan_cuda_env
