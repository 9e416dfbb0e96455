//! One endpoint's slots and the attempts queued for them, with its breaker,
//! its rate limit and how it has been doing.
//!
//! Of its cap of slots an endpoint may use only its *window* at once
//! (slow start): one until an attempt is answered, one more for every
//! attempt answered since, and back to one when an attempt gets no answer
//! within the request timeout. An endpoint that never answers therefore
//! holds one attempt permit for the whole timeout, not its cap of them,
//! while one that answers reaches its cap after as many answers.

use std::{
    collections::VecDeque,
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{breaker::Breaker, bucket::Pace};

/// An endpoint with no attempt finished for this long, and its window in
/// flight, is stuck: its tasks are parked.
const STUCK: Duration = Duration::from_millis(250);

/// An attempt waiting for a slot; its future says how it went.
pub(super) struct Queued {
    pub(super) job: Pin<Box<dyn Future<Output = Made> + Send>>,
    /// Whether it is the probe of a half-open breaker.
    pub(super) probe: bool,
    /// [`QUEUED`], then [`STARTED`] by the slot that takes it or
    /// [`ABANDONED`] by its task, which stopped waiting.
    pub(super) state: Arc<AtomicU8>,
}

/// How a made attempt went, and how long it took from its permit on.
pub(super) struct Made {
    pub(super) verdict: super::Verdict,
    pub(super) took: Duration,
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
    /// When an attempt last finished, or the endpoint last went from idle
    /// to busy (or the gate was made): waiting for a slot only pays off
    /// while the endpoint is making progress.
    pub(super) last_release: Mutex<Instant>,
    /// Attempts finished so far, so the sweeper can return parked tasks at
    /// the pace the endpoint takes them.
    pub(super) finished: AtomicU64,
    /// Moving average of attempt durations, in microseconds, from the
    /// attempt permit on (a wait for one is not the endpoint's).
    pub(super) latency_us: AtomicU64,
    pub(super) pace: Pace,
    /// The cap: slots the semaphore was made with.
    cap: usize,
    /// Slots it may use at once now, 1 to `cap` (see the module's doc).
    window: AtomicUsize,
    /// Its last finished attempt got no answer within the request timeout:
    /// its attempts draw on the process's share for such endpoints.
    unanswered: AtomicBool,
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
            cap: slots,
            window: AtomicUsize::new(1),
            unanswered: AtomicBool::new(false),
        }
    }

    /// Attempts in its slots now (a permit passed on counts as one).
    pub(super) fn in_flight(&self) -> usize {
        self.cap - self.slots.available_permits()
    }

    /// Whether its last finished attempt went unanswered.
    pub(super) fn is_unanswered(&self) -> bool {
        self.unanswered.load(Ordering::Relaxed)
    }

    pub(super) fn window(&self) -> usize {
        self.window.load(Ordering::Relaxed)
    }

    /// Whether another attempt may start now: its window is not full.
    pub(super) fn has_room(&self) -> bool {
        self.in_flight() < self.window()
    }

    /// A slot, when the window has room for one more attempt. An idle
    /// endpoint that takes one starts the clock of [`Self::stuck`] afresh:
    /// progress counts from when it became busy, not from an attempt that
    /// finished long ago, so an endpoint that gets a task every few seconds
    /// is not taken for stuck when a second comes while its window is one.
    /// Called under the queue lock.
    pub(super) fn take_slot(&self) -> Option<OwnedSemaphorePermit> {
        if !self.has_room() {
            return None;
        }
        let idle = self.in_flight() == 0;
        let permit = self.slots.clone().try_acquire_owned().ok()?;
        if idle {
            *self.last_release.lock().expect("release lock") = Instant::now();
        }
        Some(permit)
    }

    /// Record whether a finished attempt was answered: the window grows by
    /// one per answer (up to the cap), and falls back to one without.
    pub(super) fn answered(&self, answered: bool) {
        self.unanswered.store(!answered, Ordering::Relaxed);
        if answered {
            let _ = self.window.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| Some((w + 1).min(self.cap)));
        } else {
            self.window.store(1, Ordering::Relaxed);
        }
    }

    /// The next queued attempt, with `permit`; or `permit` is freed, under
    /// the queue lock, so no attempt is left queued beside a free slot. A
    /// window that shrank below the attempts in flight frees it too.
    pub(super) fn next_or_free(&self, permit: OwnedSemaphorePermit) -> Option<(OwnedSemaphorePermit, Queued)> {
        let mut queue = self.queue.lock().expect("queue lock");
        let next = if self.in_flight() <= self.window() { queue.pop_front() } else { None };
        match next {
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

    /// Its window full and nothing finished for a while.
    pub(super) fn stuck(&self) -> bool {
        !self.has_room() && self.last_release.lock().expect("release lock").elapsed() > STUCK
    }
}
