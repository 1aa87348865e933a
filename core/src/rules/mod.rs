//! How a case moves: routing over a copy of a case (`flow`) and the sandboxed scripts that
//! declare procedures and run their hooks and conditions (`script`).

pub mod flow;
pub mod script;
