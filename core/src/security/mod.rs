//! Who may do what, and the record of what was done: case visibility, roles and
//! delegations, API tokens, staff passwords and sessions, the hash-chained audit log.

pub mod access;
pub mod audit;
pub mod sessions;
pub mod tokens;
