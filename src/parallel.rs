//! Work shared out over scoped threads: the one thread pool of the project. Every hot
//! loop of the codec (synthesis, the encoder's distortion gradient and its
//! hypernetwork) is a list of independent groups of tiles, each worked on with a
//! per-thread scratch buffer; training decodes its image files and the bench runs its
//! files the same way.
//!
//! ```
//! let squares = ipc_codec::parallel::map_ordered(&[1, 2, 3, 4], 2, |x| x * x);
//! assert_eq!(squares, [1, 4, 9, 16]);
//! ```

use std::sync::Mutex;

/// The number of threads to use for `threads` (0: every core, as the standard library
/// reports them; 1 when it cannot tell).
pub fn resolve_threads(threads: usize) -> usize {
    if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    }
}

/// Calls `work(item, scratch)` for every item of `items` (`count` of them), on up to
/// `threads` threads (0: every core; never more threads than items). Each thread takes
/// the next item when it is free and keeps its own scratch. A panic in `work` is
/// passed on to the caller once every thread has stopped.
pub fn for_each_group<I, S>(
    items: I,
    count: usize,
    threads: usize,
    work: impl Fn(I::Item, &mut S) + Sync,
) where
    I: Iterator + Send,
    S: Default,
{
    let threads = resolve_threads(threads).min(count.max(1));
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

/// `items.iter().map(f).collect()` on up to `threads` threads (0: every core), results
/// in the order of `items`.
pub fn map_ordered<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let done = Mutex::new(Vec::with_capacity(items.len()));
    for_each_group(
        items.iter().enumerate(),
        items.len(),
        threads,
        |(i, item), _: &mut ()| {
            let r = f(item);
            done.lock().expect("a worker panicked").push((i, r));
        },
    );
    let mut done = done.into_inner().expect("a worker panicked");
    done.sort_unstable_by_key(|&(i, _)| i);
    done.into_iter().map(|(_, r)| r).collect()
}
