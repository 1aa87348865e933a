//! The engine threads: every engine call a request makes runs on one of a few threads of
//! their own, off the async workers (scripts are CPU-bound and sled is synchronous), and
//! these threads make commits durable in groups. A commit is answered after a store flush
//! that started after it; a thread flushes when nothing is left to run (no call queued,
//! none running) or when the oldest unanswered commit has waited [`MAX_WAIT`] while calls
//! kept coming. One flush thus covers every commit made while the previous one was on its
//! way to disk, the other threads keep running calls meanwhile, and nobody is woken only
//! to learn that somebody else's flush covered it.
//!
//! Measured against one `spawn_blocking` per call and an async flush leader (see
//! `docs/performance.md`): that design woke four to six threads per transition and
//! flushed every five commits or so.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use guichet_core::Engine;
use parking_lot::{Condvar, Mutex};

/// Longest a commit waits for its group's flush while calls keep coming. A thousandth of
/// a second is far below what a person notices and lets a flush gather every commit
/// of that millisecond under full load.
pub const MAX_WAIT: Duration = Duration::from_millis(1);
/// Commits answered by one flush at most; more are flushed without waiting [`MAX_WAIT`].
const MAX_GROUP: usize = 512;
/// For [`Pool::commit`]: the call wrote outside case commits (no ticket); answer after
/// the next flush, which covers everything written before it starts.
pub const NEXT_FLUSH: u64 = u64::MAX;

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error(transparent)]
    Engine(#[from] guichet_core::Error),
    #[error("the server is shutting down")]
    Closed,
    /// The call panicked (its sender was dropped unanswered). A call skipped because its
    /// request gave up is never awaited, so it cannot be mistaken for this.
    #[error("an engine call failed unexpectedly")]
    Panicked,
}

/// Whether a call may run scripts. Calls that may (commits, reloads) run on all threads
/// but one, so reads are answered even while every other thread runs a slow script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weight {
    /// Reads: no script runs.
    Light,
    /// Transitions and other calls that may run scripts.
    Heavy,
}

/// Sends a commit's answer once its flush is done (or failed).
type Answer = Box<dyn FnOnce(Result<(), FlushFailed>) + Send>;

/// Why a flush failed, for every commit it was to answer.
#[derive(Clone)]
struct FlushFailed {
    /// The store is out of reach for a moment (a database connection cut): the client
    /// may try again, as with a commit that met it.
    unavailable: bool,
    message: String,
}

impl From<FlushFailed> for guichet_core::Error {
    fn from(f: FlushFailed) -> Self {
        if f.unavailable {
            guichet_core::Error::Unavailable(f.message)
        } else {
            guichet_core::Error::Store(f.message)
        }
    }
}

/// A call as the threads run it: it answers at once, or returns the answer that waits for
/// the next flush.
type Job = Box<dyn FnOnce(&Engine) -> Option<Answer> + Send>;

tokio::task_local! {
    /// The gate of the request being served, set by [`within`].
    static GATE: Arc<Gate>;
}

/// Between a request's deadline and its engine calls: either the request gives up before
/// any call that may write has started (it is answered 408 and nothing happened), or such
/// a call has started and the request is answered with what it did, however late.
#[derive(Default)]
pub struct Gate(AtomicU8);

const OPEN: u8 = 0;
const WRITING: u8 = 1;
const ABANDONED: u8 = 2;

impl Gate {
    /// The request's time ran out: true if it may be answered 408 now (no write started;
    /// none will).
    pub fn abandon(&self) -> bool {
        match self
            .0
            .compare_exchange(OPEN, ABANDONED, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => true,
            Err(now) => now == ABANDONED,
        }
    }

    /// A write is about to start: false if the request already gave up.
    fn start_write(&self) -> bool {
        match self
            .0
            .compare_exchange(OPEN, WRITING, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => true,
            Err(now) => now == WRITING,
        }
    }

    fn abandoned(&self) -> bool {
        self.0.load(Ordering::SeqCst) == ABANDONED
    }
}

/// Runs `request` (a request's handling) under `gate`, so the engine calls it makes
/// through a [`Pool`] see whether it gave up.
pub async fn within<F: std::future::Future>(gate: Arc<Gate>, request: F) -> F::Output {
    GATE.scope(gate, request).await
}

fn current_gate() -> Option<Arc<Gate>> {
    GATE.try_with(Arc::clone).ok()
}

#[derive(Default)]
struct State {
    /// Calls waiting for a thread, each with its arrival number (older runs first).
    light: VecDeque<(u64, Job)>,
    heavy: VecDeque<(u64, Job)>,
    arrivals: u64,
    /// Commits made and not yet covered by a flush that started after them.
    waiting: Vec<Answer>,
    /// When the oldest of `waiting` was made.
    since: Option<Instant>,
    running: usize,
    running_heavy: usize,
    /// Heavy calls that may run at once: one thread is kept for light ones.
    max_heavy: usize,
    flushing: bool,
    closed: bool,
}

impl State {
    fn queued(&self) -> usize {
        self.light.len() + self.heavy.len()
    }

    fn flush_due(&self) -> bool {
        !self.flushing
            && !self.waiting.is_empty()
            && ((self.queued() == 0 && self.running == 0)
                || self.waiting.len() >= MAX_GROUP
                || self.since.is_some_and(|t| t.elapsed() >= MAX_WAIT))
    }

    /// The oldest call this thread may run now.
    fn next(&mut self) -> Option<(Weight, Job)> {
        let light = self.light.front().map(|j| j.0);
        let heavy = self
            .heavy
            .front()
            .map(|j| j.0)
            .filter(|_| self.running_heavy < self.max_heavy);
        let take_heavy = match (light, heavy) {
            (Some(l), Some(h)) => h < l,
            (None, Some(_)) => true,
            _ => false,
        };
        if take_heavy {
            self.heavy.pop_front().map(|(_, j)| (Weight::Heavy, j))
        } else {
            self.light.pop_front().map(|(_, j)| (Weight::Light, j))
        }
    }
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    /// Time the scripts of one call may take (see `guichet_core::script::with_budget`).
    budget: Duration,
}

pub struct Pool {
    shared: Arc<Shared>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Pool {
    /// Starts `threads` engine threads (at least one) with the default script budget.
    pub fn start(engine: Arc<Engine>, threads: usize) -> Arc<Pool> {
        Self::start_with(engine, threads, guichet_core::script::DEFAULT_BUDGET)
    }

    /// Starts `threads` engine threads whose calls' scripts may run `budget` each.
    pub fn start_with(engine: Arc<Engine>, threads: usize, budget: Duration) -> Arc<Pool> {
        let threads = threads.max(1);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                max_heavy: (threads - 1).max(1),
                ..State::default()
            }),
            wake: Condvar::new(),
            budget,
        });
        let handles = (0..threads)
            .map(|i| {
                let (shared, engine) = (shared.clone(), engine.clone());
                std::thread::Builder::new()
                    .name(format!("engine-{i}"))
                    .spawn(move || work(&shared, &engine))
                    .expect("cannot start an engine thread")
            })
            .collect();
        Arc::new(Pool {
            shared,
            threads: Mutex::new(handles),
        })
    }

    /// Runs `f` (a read: no script, no write) on an engine thread and answers without
    /// waiting for the disk.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Engine) -> guichet_core::Result<T> + Send + 'static,
    ) -> Result<T, PoolError> {
        self.run(Weight::Light, f).await
    }

    /// Runs `f` on an engine thread as [`Pool::call`] does, counted as a call that may run
    /// scripts (a reload, a dry run) and answered without waiting for the disk.
    pub async fn call_heavy<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Engine) -> guichet_core::Result<T> + Send + 'static,
    ) -> Result<T, PoolError> {
        self.run(Weight::Heavy, f).await
    }

    async fn run<T: Send + 'static>(
        &self,
        weight: Weight,
        f: impl FnOnce(&Engine) -> guichet_core::Result<T> + Send + 'static,
    ) -> Result<T, PoolError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let gate = current_gate();
        // The engine call logs within its request's span (its request id).
        let span = tracing::Span::current();
        self.push(
            weight,
            Box::new(move |e| {
                // The engine's own time, a child of the request's span (its request id):
                // what a trace shows apart from the queue and the flush.
                let _in = tracing::info_span!(parent: &span, "engine", kind = "read").entered();
                // The caller gave up (a request timeout) before the call started.
                if !tx.is_closed() && !gate.is_some_and(|g| g.abandoned()) {
                    let _ = tx.send(f(e).map_err(PoolError::from));
                }
                None
            }),
        )?;
        rx.await.map_err(|_| PoolError::Panicked)?
    }

    /// Runs `f` on an engine thread and answers once the commit whose ticket `ticket`
    /// reads from the result is on disk ([`NEXT_FLUSH`] for writes without a ticket; 0
    /// for results that committed nothing). Once it starts, the request that made it is
    /// answered with its result even past its deadline.
    pub async fn commit<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Engine) -> guichet_core::Result<T> + Send + 'static,
        ticket: impl FnOnce(&T) -> u64 + Send + 'static,
    ) -> Result<T, PoolError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let gate = current_gate();
        let span = tracing::Span::current();
        self.push(
            Weight::Heavy,
            Box::new(move |e| {
                let _in = tracing::info_span!(parent: &span, "engine", kind = "write").entered();
                if tx.is_closed() || gate.is_some_and(|g| !g.start_write()) {
                    return None;
                }
                match f(e) {
                    Err(err) => {
                        let _ = tx.send(Err(err.into()));
                        None
                    }
                    Ok(v) => {
                        let t = ticket(&v);
                        let answer: Answer = Box::new(move |flushed| {
                            let _ = tx.send(
                                flushed
                                    .map(|()| v)
                                    .map_err(|f| guichet_core::Error::from(f).into()),
                            );
                        });
                        if t <= e.flushed() {
                            answer(Ok(()));
                            None
                        } else {
                            Some(answer)
                        }
                    }
                }
            }),
        )?;
        rx.await.map_err(|_| PoolError::Panicked)?
    }

    fn push(&self, weight: Weight, job: Job) -> Result<(), PoolError> {
        let mut st = self.shared.state.lock();
        if st.closed {
            return Err(PoolError::Closed);
        }
        st.arrivals += 1;
        let n = st.arrivals;
        match weight {
            Weight::Light => st.light.push_back((n, job)),
            Weight::Heavy => st.heavy.push_back((n, job)),
        }
        metrics::gauge!("guichet_engine_queue").set(st.queued() as f64);
        drop(st);
        self.shared.wake.notify_one();
        Ok(())
    }

    /// Calls waiting for a thread.
    pub fn queued(&self) -> usize {
        self.shared.state.lock().queued()
    }

    /// Refuses new calls from now on; those queued still run and are answered. Returns at
    /// once ([`Pool::shutdown`] waits for the threads).
    pub fn close(&self) {
        self.shared.state.lock().closed = true;
        self.shared.wake.notify_all();
    }

    /// Closes, runs what was queued, answers every commit after a last flush and stops the
    /// threads (which then release the engine).
    pub fn shutdown(&self) {
        self.close();
        for t in self.threads.lock().drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn work(shared: &Shared, engine: &Engine) {
    let mut st = shared.state.lock();
    loop {
        if st.flush_due() {
            st.flushing = true;
            st.since = None;
            let group = std::mem::take(&mut st.waiting);
            drop(st);
            // Every commit in the group was made before this flush starts, so it covers
            // them all whatever their tickets.
            let started = std::time::Instant::now();
            let flushed = engine.flush().map(|_| ()).map_err(|e| match e {
                guichet_core::Error::Unavailable(message) => FlushFailed {
                    unavailable: true,
                    message,
                },
                other => FlushFailed {
                    unavailable: false,
                    message: other.to_string(),
                },
            });
            metrics::histogram!("guichet_flush_duration_seconds")
                .record(started.elapsed().as_secs_f64());
            metrics::histogram!("guichet_flush_group_size").record(group.len() as f64);
            for answer in group {
                answer(flushed.clone());
            }
            st = shared.state.lock();
            st.flushing = false;
            continue;
        }
        if let Some((weight, job)) = st.next() {
            metrics::gauge!("guichet_engine_queue").set(st.queued() as f64);
            st.running += 1;
            if weight == Weight::Heavy {
                st.running_heavy += 1;
            }
            drop(st);
            // A panic drops the job's sender: its caller gets an error, the thread lives.
            let waits = catch_unwind(AssertUnwindSafe(|| {
                guichet_core::script::with_budget(shared.budget, || job(engine))
            }))
            .unwrap_or(None);
            st = shared.state.lock();
            st.running -= 1;
            if weight == Weight::Heavy {
                st.running_heavy -= 1;
                if !st.heavy.is_empty() {
                    // A heavy call may have waited for this one's place.
                    shared.wake.notify_one();
                }
            }
            if let Some(answer) = waits {
                if st.waiting.is_empty() {
                    st.since = Some(Instant::now());
                }
                st.waiting.push(answer);
            }
            continue;
        }
        if st.closed && st.queued() == 0 && st.running == 0 && st.waiting.is_empty() && !st.flushing
        {
            break;
        }
        // Nothing to run. Commits wait either for the calls still running (whose thread
        // flushes when it finds nothing left) or for a flush in progress (whose thread
        // looks again when done); only their age can make this thread flush them.
        match st.since {
            Some(t) if !st.flushing => {
                let left = MAX_WAIT.saturating_sub(t.elapsed());
                shared.wake.wait_for(&mut st, left);
            }
            _ => shared.wake.wait(&mut st),
        }
    }
    drop(st);
    // Threads waiting for this one's calls to finish must look again.
    shared.wake.notify_all();
}
