//! Threads for CPU work: how many cores a batch spreads over, a batch mapped on them, and
//! one-off work on a thread of its own, each at the lowest scheduling priority so that it
//! yields the CPU to request handling. Shared by the layers that run such work (services,
//! mail).

/// The threads CPU work over a batch is spread on: the cores this process may use, at
/// most 8. Read once: on Linux the answer comes from the cgroup files.
pub fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8))
}

/// Maps `items` on up to `threads` threads, in order (script evaluation, message signing:
/// CPU work over a batch), each at the lowest scheduling priority (see
/// [`lower_thread_priority`]). `None` when a worker panicked.
pub fn map_on_cores<T: Send, U: Send>(items: Vec<T>, threads: usize, work: impl Fn(T) -> U + Sync) -> Option<Vec<U>> {
    let chunk = items.len().div_ceil(threads.max(1)).max(1);
    let mut slices: Vec<Vec<T>> = Vec::new();
    let mut rest = items;
    while rest.len() > chunk {
        let tail = rest.split_off(chunk);
        slices.push(rest);
        rest = tail;
    }
    slices.push(rest);
    let work = &work;
    std::thread::scope(|scope| {
        let workers: Vec<_> = slices
            .into_iter()
            .map(|slice| {
                scope.spawn(move || {
                    lower_thread_priority();
                    slice.into_iter().map(work).collect::<Vec<U>>()
                })
            })
            .collect();
        let mut mapped = Vec::new();
        for worker in workers {
            mapped.extend(worker.join().ok()?);
        }
        Some(mapped)
    })
}

/// Runs `work` on a thread of its own at the lowest scheduling priority and waits for it
/// (an admin's script run on demand). `None` when it panicked.
pub fn in_background<T: Send>(work: impl FnOnce() -> T + Send) -> Option<T> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                lower_thread_priority();
                work()
            })
            .join()
            .ok()
    })
}

/// Gives the calling thread the lowest scheduling priority (nice 19). Admins' scripts and
/// background CPU work then yield the CPU to request handling: a script that loops until
/// its deadline, or a campaign being signed, does not slow every other request down.
/// Linux keeps a nice value per thread; elsewhere this does nothing.
fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority only changes the scheduling of the thread; `who = 0` is the
    // calling thread on Linux. A failure leaves the priority as it was, which is harmless.
    #[allow(unsafe_code)]
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 19);
    }
}
