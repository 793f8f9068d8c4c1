//! What the operating system asks of the daemon, as the event loop sees it.
//!
//! - Unix: SIGINT and SIGTERM shut down, SIGHUP reloads the password and ACL files. The signals
//!   reach the loop through a mio source of their own (signal-hook-mio).
//! - Windows: Ctrl-C, Ctrl-Break, closing the console, logoff and system shutdown all shut
//!   down. There is no SIGHUP and no console event left to ask for a reload, so reloading is
//!   not available: a changed password or ACL file takes effect at the next start (as with
//!   Mosquitto on Windows). The events arrive on a thread of the `ctrlc` crate, which wakes the
//!   loop through the `Waker` the loop already has (mio allows one per `Poll`).

/// A request from the operating system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// Re-read the password and ACL files.
    #[cfg(unix)]
    Reload,
    /// Stop accepting, close every connection and return.
    Shutdown,
}

#[cfg(unix)]
pub(crate) use unix::Signals;
#[cfg(windows)]
pub(crate) use windows::Signals;

#[cfg(unix)]
mod unix {
    use super::Signal;
    use mio::{Interest, Registry, Token};
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    use std::io;

    /// The daemon's signals, registered with the loop's `Poll`.
    pub(crate) struct Signals(signal_hook_mio::v1_0::Signals);

    impl Signals {
        /// Catches SIGHUP, SIGINT and SIGTERM from now on; readiness of `token` says one came.
        pub(crate) fn register(registry: &Registry, token: Token) -> io::Result<Signals> {
            let mut signals = signal_hook_mio::v1_0::Signals::new([SIGHUP, SIGINT, SIGTERM])?;
            registry.register(&mut signals, token, Interest::READABLE)?;
            Ok(Signals(signals))
        }

        /// The signals received since the last call.
        pub(crate) fn pending(&mut self) -> impl Iterator<Item = Signal> + '_ {
            self.0.pending().map(|signal| match signal {
                SIGHUP => Signal::Reload,
                _ => Signal::Shutdown,
            })
        }
    }
}

#[cfg(windows)]
mod windows {
    use super::Signal;
    use mio::Waker;
    use std::io;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex, OnceLock, Weak};

    /// One event loop waiting for console events.
    #[derive(Debug)]
    struct Subscriber {
        shutdown: AtomicBool,
        waker: Arc<Waker>,
    }

    /// The process has one console handler (`ctrlc` refuses a second), but may run several
    /// event loops (tests do): the handler tells every live one.
    static SUBSCRIBERS: Mutex<Vec<Weak<Subscriber>>> = Mutex::new(Vec::new());
    static HANDLER: OnceLock<Result<(), String>> = OnceLock::new();

    fn notify_all() {
        let subscribers = SUBSCRIBERS.lock().unwrap_or_else(|e| e.into_inner());
        for subscriber in subscribers.iter().filter_map(Weak::upgrade) {
            subscriber.shutdown.store(true, Ordering::Release);
            if let Err(e) = subscriber.waker.wake() {
                tracing::error!("cannot wake the event loop for a console event: {e}");
            }
        }
    }

    /// Console events for one event loop, which is woken through `waker` when one comes.
    pub(crate) struct Signals(Arc<Subscriber>);

    impl Signals {
        pub(crate) fn install(waker: &Arc<Waker>) -> io::Result<Signals> {
            HANDLER
                .get_or_init(|| ctrlc::set_handler(notify_all).map_err(|e| e.to_string()))
                .clone()
                .map_err(|e| io::Error::other(format!("cannot handle console events: {e}")))?;
            let subscriber = Arc::new(Subscriber {
                shutdown: AtomicBool::new(false),
                waker: Arc::clone(waker),
            });
            let mut subscribers = SUBSCRIBERS.lock().unwrap_or_else(|e| e.into_inner());
            subscribers.retain(|s| s.strong_count() > 0);
            subscribers.push(Arc::downgrade(&subscriber));
            Ok(Signals(subscriber))
        }

        /// The events received since the last call (all of them ask for a shutdown).
        pub(crate) fn pending(&mut self) -> impl Iterator<Item = Signal> + '_ {
            self.0
                .shutdown
                .swap(false, Ordering::Acquire)
                .then_some(Signal::Shutdown)
                .into_iter()
        }
    }
}
