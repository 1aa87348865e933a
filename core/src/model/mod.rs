//! What an office declares in its scripts and what the store keeps: the office and its
//! procedures, cases with their tasks and history, form and material checks, the service
//! guide. Plain data and its validation: nothing here reads the store or the clock.

pub mod case;
pub mod files;
pub mod form;
pub mod guide;
pub mod office;
pub mod procedure;
