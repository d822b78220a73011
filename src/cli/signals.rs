//! SIGINT and SIGTERM: the process exits with 128 + the signal's number
//! (130 for Ctrl-C, 143 for SIGTERM), as a shell reports a process killed
//! by it, after removing the temporary files of unfinished writes.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use signal_hook::consts::{SIGINT, SIGTERM};

/// Whether a command stops itself on a signal (see [`defer`]).
static DEFERRED: AtomicBool = AtomicBool::new(false);
/// The signal received while deferred; 0 for none.
static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// Starts a thread that handles SIGINT and SIGTERM: it removes the
/// temporary output files in flight and exits with 128 + the signal, unless
/// a command took over with [`defer`]. Failing to install the handler
/// leaves the default action, which kills the process with the signal.
pub fn install() {
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
        return;
    };
    std::thread::spawn(move || {
        for signal in signals.forever() {
            // A second signal while a command is stopping ends it at once.
            if DEFERRED.load(Ordering::SeqCst) && RECEIVED.swap(signal, Ordering::SeqCst) == 0 {
                continue;
            }
            keyflow::jobs::output_file::remove_temporary_files();
            keyflow::dataflow::sink::remove_temporary_files();
            let name = if signal == SIGINT {
                "SIGINT"
            } else {
                "SIGTERM"
            };
            // Not eprintln!, which panics when stderr is a pipe whose reader
            // is gone (a killed launcher) and would leave this process running.
            let _ = writeln!(std::io::stderr(), "keyflow: stopped by {name}");
            std::process::exit(128 + signal);
        }
    });
}

/// Lets the caller stop itself on the first signal: it polls [`received`]
/// and returns 128 + that signal (the cluster launcher stops its members
/// first).
pub fn defer() {
    DEFERRED.store(true, Ordering::SeqCst);
}

/// The signal received since [`defer`], if any.
pub fn received() -> Option<i32> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(signal),
    }
}

/// The environment variable through which `keyflow cluster` tells its
/// members its process id.
pub const LAUNCHER_PID: &str = "KEYFLOW_LAUNCHER_PID";

/// A member of `keyflow cluster` asks the kernel for SIGTERM when its
/// launcher dies, however it dies (SIGKILL included), so no member is left
/// running as an orphan. If the launcher died before the request, the
/// member has already been re-parented and stops at once.
pub fn die_with_launcher() {
    let Ok(launcher) = std::env::var(LAUNCHER_PID) else {
        return;
    };
    if rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM))
        .is_err()
    {
        return;
    }
    let parent = rustix::process::getppid().map(|p| p.as_raw_pid().to_string());
    if parent.as_deref() != Some(launcher.as_str()) {
        let _ = writeln!(
            std::io::stderr(),
            "keyflow: error: the launcher (process {launcher}) is gone; stopping"
        );
        std::process::exit(143);
    }
}
