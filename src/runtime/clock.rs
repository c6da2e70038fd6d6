//! The one place the daemon reads the time. Tests shift it to make half an
//! hour pass at once.

use std::sync::atomic::{AtomicI64, Ordering};

pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

/// Wall-clock time, optionally shifted forward by tests.
#[derive(Default)]
pub struct SystemClock {
    shift_ms: AtomicI64,
}

impl SystemClock {
    /// Moves this clock forward (tests: "thirty minutes later").
    pub fn advance(&self, ms: i64) {
        self.shift_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        jiff::Timestamp::now().as_millisecond() + self.shift_ms.load(Ordering::SeqCst)
    }
}

/// A clock that moves only when told: `demo` and `simulate` play a day in
/// a second on it.
pub struct VirtualClock {
    now_ms: AtomicI64,
}

impl VirtualClock {
    pub fn new(start_ms: i64) -> Self {
        VirtualClock {
            now_ms: AtomicI64::new(start_ms),
        }
    }

    /// Moves the clock to `ms`; never back.
    pub fn set(&self, ms: i64) {
        self.now_ms.fetch_max(ms, Ordering::SeqCst);
    }
}

impl Clock for VirtualClock {
    fn now_ms(&self) -> i64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}
