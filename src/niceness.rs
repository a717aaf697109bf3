//! Work that may wait: threads that encode scrapes or write snapshots run at a lower CPU
//! priority than the threads that answer webhooks, so that on a busy core a delivery waits for
//! a slice of their work, not all of it.

/// The niceness of a background thread: at 10 the scheduler gives a thread answering webhooks
/// about ten times its share of a busy core.
pub const BACKGROUND: i32 = 10;

/// Lowers the calling thread's CPU priority to [`BACKGROUND`] (Linux; a no-op elsewhere or when
/// refused).
pub fn lower_this_thread() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on the calling thread; failure only leaves the priority as is.
    unsafe {
        let thread = libc::gettid() as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, thread, BACKGROUND);
    }
}
