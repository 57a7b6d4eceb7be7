//! Gradients of gradients (the penalties R1, WGAN-GP, DRAGAN) on candle's CPU backend.
//!
//! candle detaches the gradients a backward pass returns unless the thread read
//! `CANDLE_GRAD_DO_NOT_DETACH=1` at its first backward pass; keeping every graph costs
//! 3.5x the memory of a plain step. So a process is set up once: the threads that train
//! read the variable unset (their backward passes detach), then it is set, and the
//! fresh thread a penalty is computed on keeps its graph.

use candle_core::{Device, Var};

use labelgan_core::{Error, Result};

/// Runs a tiny backward pass on the calling thread, so that candle fixes this thread's
/// `CANDLE_GRAD_DO_NOT_DETACH` reading now: call it on every thread that will train,
/// before [`prepare_r1_environment`] sets the variable (the CLI does it on its worker
/// pool), so that their backward passes detach.
pub fn detach_on_this_thread() -> Result<()> {
    let v = Var::new(1f32, &Device::Cpu)?;
    v.as_tensor().sqr()?.backward()?;
    Ok(())
}

/// Lets training keep the graph of gradients for its penalty only.
///
/// candle reads `CANDLE_GRAD_DO_NOT_DETACH` once per thread, at its first backward
/// pass; with the variable set everywhere every backward keeps its whole graph (3.5x
/// the memory of a plain step). This runs a tiny backward on the calling thread while
/// the variable is unset (so this thread's plain steps detach), then sets it, so that
/// the fresh thread a trainer spawns for a penalty keeps the graph.
///
/// # Safety
/// Call first thing in `main`, before any other thread exists (it sets an environment
/// variable) and before the calling thread's first backward pass.
pub unsafe fn prepare_r1_environment() -> Result<()> {
    detach_on_this_thread()?;
    // SAFETY: the caller guarantees no other thread exists.
    unsafe { std::env::set_var("CANDLE_GRAD_DO_NOT_DETACH", "1") };
    Ok(())
}

/// The pool GAN training runs in, with the process set up for gradient penalties
/// ([`prepare_r1_environment`]), [`labelgan_kernels::cpu_threads`] workers.
///
/// Training runs best on a worker of its own rayon pool: candle's and gemm's parallel
/// loops then run with that thread taking part, instead of the main thread sleeping
/// while the workers run and then spinning against them for the cores (G and D forward
/// 1.5x faster on 2 cores, a training step about 1.2x; docs/training.md). Every worker
/// fixes its `CANDLE_GRAD_DO_NOT_DETACH` reading (unset: plain backward passes detach)
/// before the variable is set, so only the thread a penalty starts keeps its graph. Nothing
/// but GAN training should run in a process after this: any thread started later
/// keeps the graph of every gradient it computes. The heap is set up first for the
/// same large buffers every step ([`labelgan_kernels::heap::keep_large_buffers`],
/// which must precede the workers).
///
/// # Safety
/// As [`prepare_r1_environment`]: call while no other thread exists.
pub unsafe fn r1_training_pool() -> Result<rayon::ThreadPool> {
    labelgan_kernels::heap::keep_large_buffers();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(labelgan_kernels::cpu_threads())
        .build()
        .map_err(|e| Error::invalid(format!("cannot start worker threads: {e}")))?;
    pool.broadcast(|_| detach_on_this_thread())
        .into_iter()
        .collect::<Result<Vec<()>>>()?;
    // SAFETY: the pool's workers are parked, waiting for work (the broadcast above has
    // returned), and read no environment until given some; the caller guarantees no
    // other thread exists.
    unsafe { prepare_r1_environment() }?;
    Ok(pool)
}
