//! Telling people and handing work out: the notices a transition produces and their
//! delivery queue, and external tasks done by workers outside the server.

pub mod external;
pub mod notice;
pub mod outbox;
