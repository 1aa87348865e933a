//! An example Guichet plugin, complete: resident ID numbers (GB 11643-1999).
//!
//! It adds
//! - a script module `idcard`, so procedures can write `idcard::valid(applicant.id)` in a
//!   routing condition or a hook, and `idcard::birth_date(id)`;
//! - a step handler for topic `idcard-check`: an automatic step naming that topic is run
//!   inside the server; a valid number approves the step and records the holder's birth
//!   date, an invalid one takes the step's `invalid` outcome.
//!
//! Registered explicitly by whoever builds the server:
//! `guichet::server::open_with(&config, clock, vec![Box::new(IdCard)])`.
//! docs/plugins.md walks through this file.

use std::sync::Arc;

use guichet_core::plugin::rhai::{FuncRegistration, Module};
use guichet_core::plugin::{
    BoxFuture, Job, JobResult, Plugin, PluginError, Registrar, StepHandler,
};

/// Weights of the first 17 digits, and the check character for each remainder mod 11.
const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK: &[u8; 11] = b"10X98765432";

/// Whether `id` is an 18-character resident ID number with a valid date and check digit.
pub fn valid(id: &str) -> bool {
    let b = id.as_bytes();
    if b.len() != 18 || !b[..17].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let sum: u32 = b[..17]
        .iter()
        .zip(WEIGHTS)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    let check = CHECK[(sum % 11) as usize];
    b[17].to_ascii_uppercase() == check && birth_date(id).is_some()
}

/// The date of birth the number encodes (`YYYY-MM-DD`), if it is a real date.
pub fn birth_date(id: &str) -> Option<String> {
    let d = chrono::NaiveDate::parse_from_str(id.get(6..14)?, "%Y%m%d").ok()?;
    Some(d.format("%Y-%m-%d").to_string())
}

/// The plugin. It has no configuration.
pub struct IdCard;

impl Plugin for IdCard {
    fn name(&self) -> &str {
        "idcard"
    }

    fn register(&self, r: &mut Registrar) -> Result<(), PluginError> {
        let mut m = Module::new();
        FuncRegistration::new("valid").set_into_module(&mut m, |id: &str| valid(id));
        FuncRegistration::new("birth_date")
            .set_into_module(&mut m, |id: &str| birth_date(id).unwrap_or_default());
        r.script_module("idcard", m);
        r.step_handler("idcard-check", Arc::new(Check));
        Ok(())
    }
}

/// Runs steps of topic `idcard-check` on the applicant's id.
struct Check;

impl StepHandler for Check {
    fn handle<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Result<JobResult, String>> {
        Box::pin(async move {
            let id = &job.applicant.id;
            let mut r = JobResult::default();
            match birth_date(id).filter(|_| valid(id)) {
                Some(born) => {
                    r.data.insert("id_verified".into(), true.into());
                    r.data.insert("birth_date".into(), born.into());
                }
                None => r.outcome = Some("invalid".into()),
            }
            Ok(r)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_digits_and_dates() {
        assert!(valid("11010519491231002X"));
        assert!(valid("11010519491231002x"), "a lower-case x is accepted");
        assert!(valid("440524188001010014"));
        assert!(!valid("110101199001011234"), "wrong check digit");
        assert!(
            !valid("110105194902310026"),
            "right check digit, but 31 February"
        );
        assert!(!valid("1101051949123100"), "too short");
        assert_eq!(
            birth_date("11010519491231002X").as_deref(),
            Some("1949-12-31")
        );
    }
}
