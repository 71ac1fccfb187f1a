//! Removing an unfinished output on SIGINT, SIGTERM and SIGHUP.
//!
//! [`crate::atomic::AtomicFile`] writes to a temporary file beside the target and
//! removes it when the run fails; a signal's default action kills the process without
//! running that code, which would leave `.NAME.tmp-PID` behind. So while a temporary
//! file exists its path is held here, and a handler unlinks it, then re-raises the
//! signal with its default action (the exit status still says which signal it was).
//!
//! The handler does only async-signal-safe work (an atomic load, `unlink`, `signal`,
//! `raise`). Paths handed to it are never freed (a few bytes per output file), so the
//! handler can never read freed memory. One temporary file is guarded at a time, which
//! is all that `encode` and `decode` have. SIGKILL cannot be caught: the temporary file
//! is created only once the output's bytes are ready (see `encode` and `decode`), so it
//! can remain only when the process is killed in the moments that writing them takes.

#[cfg(unix)]
mod imp {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;
    use std::sync::atomic::{AtomicPtr, Ordering};

    /// The guarded temporary file's path (a leaked, NUL-terminated string), or null.
    static GUARDED: AtomicPtr<libc::c_char> = AtomicPtr::new(std::ptr::null_mut());

    const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

    extern "C" fn on_signal(signal: libc::c_int) {
        let path = GUARDED.swap(std::ptr::null_mut(), Ordering::SeqCst);
        // SAFETY: `path` is null or a NUL-terminated string that is never freed
        // (`guard` leaks it); unlink, signal and raise are async-signal-safe.
        unsafe {
            if !path.is_null() {
                libc::unlink(path);
            }
            libc::signal(signal, libc::SIG_DFL);
            libc::raise(signal);
        }
    }

    pub fn install() {
        for signal in SIGNALS {
            // SAFETY: installs a handler that does only async-signal-safe work. A
            // signal the process ignores (e.g. SIGHUP under nohup) stays ignored.
            unsafe {
                let previous = libc::signal(signal, on_signal as *const () as libc::sighandler_t);
                if previous == libc::SIG_IGN {
                    libc::signal(signal, libc::SIG_IGN);
                }
            }
        }
    }

    pub fn guard(path: &Path) {
        let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
            return;
        };
        GUARDED.store(c.into_raw(), Ordering::SeqCst);
    }

    pub fn release() {
        // The old string is leaked on purpose (module documentation).
        GUARDED.store(std::ptr::null_mut(), Ordering::SeqCst);
    }
}

#[cfg(not(unix))]
mod imp {
    use std::path::Path;

    pub fn install() {}
    pub fn guard(_path: &Path) {}
    pub fn release() {}
}

/// Installs the handlers; called once at start-up.
pub fn install() {
    imp::install();
}

/// Makes `path` the temporary file a signal removes.
pub fn guard(path: &std::path::Path) {
    imp::guard(path);
}

/// No temporary file to remove any more (it was renamed or removed).
pub fn release() {
    imp::release();
}
