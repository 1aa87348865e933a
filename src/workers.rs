//! In-process workers: for every topic a plugin handles, a loop fetches and locks that
//! topic's external tasks through the same engine calls HTTP workers use, runs the
//! plugin's handler, and completes the task or reports the failure. A handler that hangs
//! loses its lease, and the task is fetched again.

use std::sync::{Arc, Weak};
use std::time::Duration;

use guichet_core::Engine;

use crate::background::Stopping;

const POLL: Duration = Duration::from_millis(200);
const LEASE: chrono::Duration = chrono::Duration::minutes(5);
/// Wait before a failed job is fetched again.
const RETRY_IN: chrono::Duration = chrono::Duration::seconds(5);

pub fn start(engine: &Arc<Engine>, stopping: &Stopping) -> Vec<tokio::task::JoinHandle<()>> {
    engine
        .plugins()
        .handlers()
        .iter()
        .map(|(topic, handler)| {
            let weak: Weak<Engine> = Arc::downgrade(engine);
            let topic = topic.clone();
            let handler = handler.clone();
            let mut stopping = stopping.clone();
            tokio::spawn(async move {
                let worker = format!("in-process:{topic}");
                loop {
                    let Some(engine) = weak.upgrade() else { return };
                    let e = engine.clone();
                    let (t, w) = (vec![topic.clone()], worker.clone());
                    // Locked durably before the handler runs, as for a worker over HTTP.
                    let fetched = tokio::task::spawn_blocking(move || {
                        let (jobs, ticket) = e.fetch_for_plugin(&w, &t, 16, LEASE)?;
                        e.durable(ticket)?;
                        Ok::<_, guichet_core::Error>(jobs)
                    })
                    .await;
                    let jobs = match fetched {
                        Ok(Ok(jobs)) => jobs,
                        Ok(Err(e)) => {
                            tracing::error!(message = "fetching external tasks failed", topic = %topic, error = %e);
                            Vec::new()
                        }
                        Err(_) => Vec::new(),
                    };
                    let idle = jobs.is_empty();
                    for locked in jobs {
                        let lease = (LEASE.to_std().unwrap_or(POLL)).saturating_sub(POLL);
                        let result = tokio::time::timeout(lease, handler.handle(&locked.job))
                            .await
                            .unwrap_or_else(|_| Err("the handler did not finish within its lease".into()));
                        let e = engine.clone();
                        let (w, task) = (worker.clone(), locked.job.task.clone());
                        let done = tokio::task::spawn_blocking(move || {
                            let c = match result {
                                // A result the step refuses (an unknown outcome, data of
                                // the wrong type) counts as a failure of the handler, with
                                // the reason.
                                Ok(r) => e
                                    .complete_for_plugin(&w, &task, r.outcome, r.data)
                                    .or_else(|err| match err {
                                        guichet_core::Error::Validation(m) => {
                                            e.fail_for_plugin(&w, &task, &m, RETRY_IN)
                                        }
                                        other => Err(other),
                                    }),
                                Err(msg) => e.fail_for_plugin(&w, &task, &msg, RETRY_IN),
                            }?;
                            e.durable(c.ticket)
                        })
                        .await;
                        match done {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => tracing::warn!(message = "external task not settled", task = %locked.job.task, error = %e),
                            Err(_) => tracing::error!(message = "settling an external task panicked"),
                        }
                    }
                    drop(engine);
                    let pause = if idle { POLL } else { Duration::ZERO };
                    if !stopping.sleep(pause).await {
                        return;
                    }
                }
            })
        })
        .collect()
}
