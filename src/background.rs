//! The background loops' life cycle (mini-redis's shutdown): one signal tells every loop
//! to stop, each finishes the pass it is in and returns, and the server waits for their
//! tasks to complete. Nothing is aborted in the middle of a pass.

use std::time::Duration;

use tokio::sync::watch;

/// Tells every loop to stop.
pub struct Stop(watch::Sender<bool>);

/// A loop's side of [`Stop`].
#[derive(Clone)]
pub struct Stopping(watch::Receiver<bool>);

pub fn channel() -> (Stop, Stopping) {
    let (tx, rx) = watch::channel(false);
    (Stop(tx), Stopping(rx))
}

impl Stop {
    pub fn stop(&self) {
        let _ = self.0.send(true);
    }
}

impl Stopping {
    /// Sleeps `d`, or less if the server stops meanwhile; false once it stops.
    pub async fn sleep(&mut self, d: Duration) -> bool {
        tokio::select! {
            _ = self.0.wait_for(|stopped| *stopped) => false,
            () = tokio::time::sleep(d) => true,
        }
    }
}
