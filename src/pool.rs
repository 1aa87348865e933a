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
    #[error("an engine call failed unexpectedly")]
    Panicked,
}

/// Sends a commit's answer once its flush is done (or failed).
type Answer = Box<dyn FnOnce(Result<(), String>) + Send>;
/// A call as the threads run it: it answers at once, or returns the answer that waits for
/// the next flush.
type Job = Box<dyn FnOnce(&Engine) -> Option<Answer> + Send>;

#[derive(Default)]
struct State {
    queue: VecDeque<Job>,
    /// Commits made and not yet covered by a flush that started after them.
    waiting: Vec<Answer>,
    /// When the oldest of `waiting` was made.
    since: Option<Instant>,
    running: usize,
    flushing: bool,
    closed: bool,
}

impl State {
    fn flush_due(&self) -> bool {
        !self.flushing
            && !self.waiting.is_empty()
            && ((self.queue.is_empty() && self.running == 0)
                || self.waiting.len() >= MAX_GROUP
                || self.since.is_some_and(|t| t.elapsed() >= MAX_WAIT))
    }
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

pub struct Pool {
    shared: Arc<Shared>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Pool {
    /// Starts `threads` engine threads (at least one).
    pub fn start(engine: Arc<Engine>, threads: usize) -> Arc<Pool> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        let handles = (0..threads.max(1))
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

    /// The default number of threads: two per core. Calls run on at most that many
    /// threads, so a long hook slows the others but cannot take every core; more threads
    /// only added context switches and allocator heaps (measured).
    pub fn default_threads() -> usize {
        std::thread::available_parallelism().map_or(2, |n| n.get()) * 2
    }

    /// Runs `f` on an engine thread and answers without waiting for the disk (reads, and
    /// writes nobody needs durable before the answer).
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Engine) -> guichet_core::Result<T> + Send + 'static,
    ) -> Result<T, PoolError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.push(Box::new(move |e| {
            // The caller gave up (a request timeout) before the call started.
            if !tx.is_closed() {
                let _ = tx.send(f(e).map_err(PoolError::from));
            }
            None
        }))?;
        rx.await.map_err(|_| PoolError::Panicked)?
    }

    /// Runs `f` on an engine thread and answers once the commit whose ticket `ticket`
    /// reads from the result is on disk ([`NEXT_FLUSH`] for writes without a ticket; 0
    /// for results that committed nothing).
    pub async fn commit<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Engine) -> guichet_core::Result<T> + Send + 'static,
        ticket: impl FnOnce(&T) -> u64 + Send + 'static,
    ) -> Result<T, PoolError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.push(Box::new(move |e| {
            if tx.is_closed() {
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
                                .map_err(|m| guichet_core::Error::Store(m).into()),
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
        }))?;
        rx.await.map_err(|_| PoolError::Panicked)?
    }

    fn push(&self, job: Job) -> Result<(), PoolError> {
        let mut st = self.shared.state.lock();
        if st.closed {
            return Err(PoolError::Closed);
        }
        st.queue.push_back(job);
        drop(st);
        self.shared.wake.notify_one();
        Ok(())
    }

    /// Calls waiting for a thread.
    pub fn queued(&self) -> usize {
        self.shared.state.lock().queue.len()
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
            let flushed = engine.flush().map(|_| ()).map_err(|e| e.to_string());
            for answer in group {
                answer(flushed.clone());
            }
            st = shared.state.lock();
            st.flushing = false;
            continue;
        }
        if let Some(job) = st.queue.pop_front() {
            st.running += 1;
            drop(st);
            // A panic drops the job's sender: its caller gets `Panicked`, the thread lives.
            let waits = catch_unwind(AssertUnwindSafe(|| job(engine))).unwrap_or(None);
            st = shared.state.lock();
            st.running -= 1;
            if let Some(answer) = waits {
                if st.waiting.is_empty() {
                    st.since = Some(Instant::now());
                }
                st.waiting.push(answer);
            }
            continue;
        }
        if st.closed && st.running == 0 && st.waiting.is_empty() && !st.flushing {
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
