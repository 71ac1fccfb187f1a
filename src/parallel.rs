//! Work shared out over scoped threads. Every hot loop of the codec (synthesis, the
//! encoder's distortion gradient and its hypernetwork) is a list of independent groups
//! of tiles, each worked on with a per-thread scratch buffer.

use std::sync::Mutex;

/// Calls `work(item, scratch)` for every item of `items` (`count` of them), on up to
/// `threads` threads (0: every core; never more threads than items). Each thread takes
/// the next item when it is free and keeps its own scratch.
pub(crate) fn for_each_group<I, S>(
    items: I,
    count: usize,
    threads: usize,
    work: impl Fn(I::Item, &mut S) + Sync,
) where
    I: Iterator + Send,
    S: Default,
{
    let threads = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    }
    .min(count.max(1));
    let queue = Mutex::new(items);
    let worker = || {
        let mut scratch = S::default();
        loop {
            let item = queue.lock().map(|mut q| q.next());
            match item {
                Ok(Some(item)) => work(item, &mut scratch),
                _ => break,
            }
        }
    };
    if threads <= 1 {
        worker();
    } else {
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(worker);
            }
        });
    }
}
