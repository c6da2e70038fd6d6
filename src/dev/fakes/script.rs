//! What a fake answers to the next sends: a queue of scripted outcomes, then
//! success. Shared by every provider fake.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One scripted answer.
#[derive(Clone, Debug, PartialEq)]
pub enum Scripted {
    /// Accept the message.
    Ok,
    /// A transient provider error (5xx or the provider's "try later" code).
    Transient,
    /// A rate-limit answer with this retry-after.
    RateLimited(Duration),
    /// A permanent error for this recipient (invalid number, blocked bot).
    Permanent,
    /// A configuration error (bad token, no funds).
    Misconfigured,
    /// Accept the message but answer only after this long (to provoke a
    /// client timeout after the request went out).
    Slow(Duration),
}

/// A shared, scriptable queue of answers.
#[derive(Clone, Default)]
pub struct Script(Arc<Mutex<VecDeque<Scripted>>>);

impl Script {
    /// Queues `n` copies of an answer.
    pub fn then(&self, answer: Scripted, n: usize) -> &Self {
        if let Ok(mut q) = self.0.lock() {
            q.extend(std::iter::repeat_n(answer, n));
        }
        self
    }

    /// The next answer (success once the script is used up).
    pub fn next(&self) -> Scripted {
        self.0
            .lock()
            .ok()
            .and_then(|mut q| q.pop_front())
            .unwrap_or(Scripted::Ok)
    }
}
