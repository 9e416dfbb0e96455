//! One endpoint's slots and the attempts queued for them, with its breaker,
//! its rate limit and how it has been doing.

use std::{
    collections::VecDeque,
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU8, AtomicU64},
    },
    time::{Duration, Instant},
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{breaker::Breaker, bucket::Pace};

/// An endpoint with no attempt finished for this long, and its cap in
/// flight, is stuck: its tasks are parked.
const STUCK: Duration = Duration::from_millis(250);

/// An attempt waiting for a slot; its future says whether it succeeded.
pub(super) struct Queued {
    pub(super) job: Pin<Box<dyn Future<Output = bool> + Send>>,
    /// Whether it is the probe of a half-open breaker.
    pub(super) probe: bool,
    /// [`QUEUED`], then [`STARTED`] by the slot that takes it or
    /// [`ABANDONED`] by its task, which stopped waiting.
    pub(super) state: Arc<AtomicU8>,
}

pub(super) const QUEUED: u8 = 0;
pub(super) const STARTED: u8 = 1;
pub(super) const ABANDONED: u8 = 2;

pub(super) struct Gate {
    pub(super) slots: Arc<Semaphore>,
    /// Attempts waiting for a slot, oldest first. A slot is taken, or an
    /// attempt queued, only under this lock, and a slot is freed only under
    /// it when nothing is queued: no attempt waits while a slot is free.
    pub(super) queue: Mutex<VecDeque<Queued>>,
    pub(super) breaker: Mutex<Breaker>,
    /// When an attempt last finished (or the gate was made): waiting for a
    /// slot only pays off while the endpoint is making progress.
    pub(super) last_release: Mutex<Instant>,
    /// Attempts finished so far, so the sweeper can return parked tasks at
    /// the pace the endpoint takes them.
    pub(super) finished: AtomicU64,
    /// Moving average of attempt durations, in microseconds.
    pub(super) latency_us: AtomicU64,
    pub(super) pace: Pace,
}

impl Gate {
    pub(super) fn new(slots: usize) -> Self {
        Gate {
            slots: Arc::new(Semaphore::new(slots)),
            queue: Mutex::default(),
            breaker: Mutex::default(),
            last_release: Mutex::new(Instant::now()),
            finished: AtomicU64::new(0),
            latency_us: AtomicU64::new(0),
            pace: Pace::default(),
        }
    }

    /// The next queued attempt, with `permit`; or `permit` is freed, under
    /// the queue lock, so no attempt is left queued beside a free slot.
    pub(super) fn next_or_free(&self, permit: OwnedSemaphorePermit) -> Option<(OwnedSemaphorePermit, Queued)> {
        let mut queue = self.queue.lock().expect("queue lock");
        match queue.pop_front() {
            Some(queued) => Some((permit, queued)),
            None => {
                drop(permit);
                None
            }
        }
    }

    /// A half-open breaker's probe that was not made: the next task may be it.
    pub(super) fn drop_probe(&self, probe: bool) {
        if probe {
            self.breaker.lock().expect("breaker lock").probe_not_made();
        }
    }

    /// Every slot taken and nothing finished for a while.
    pub(super) fn stuck(&self) -> bool {
        self.slots.available_permits() == 0 && self.last_release.lock().expect("release lock").elapsed() > STUCK
    }
}
