//! Rendering a range of a stream on all cores, in order.

/// `render(i)` for `i` in `start..start + count`, split over the cores, in order.
pub(crate) fn render_range<T: Send>(start: u64, count: usize, render: impl Fn(u64) -> T + Sync) -> Vec<T> {
    let threads = labelgan_kernels::cpu_threads().min(count).max(1);
    let per = count.div_ceil(threads);
    let render = &render;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (a, b) = ((t * per).min(count), ((t + 1) * per).min(count));
                s.spawn(move || (a..b).map(|i| render(start + i as u64)).collect::<Vec<_>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("toyworld render thread panicked"))
            .collect()
    })
}
