//! Where the engine gets the time. Production uses [`SystemClock`]; tests use
//! [`ManualClock`] and move time on deliberately, never by sleeping.

use parking_lot::Mutex;

use chrono::{DateTime, Duration, Utc};

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to.
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        ManualClock(Mutex::new(start))
    }

    pub fn advance(&self, by: Duration) {
        *self.0.lock() += by;
    }

    /// Moves the clock to `t`, forward or back.
    pub fn set(&self, t: DateTime<Utc>) {
        *self.0.lock() = t;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock()
    }
}
