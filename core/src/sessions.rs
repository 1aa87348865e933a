//! Staff passwords and sign-in sessions, for people working in a browser (programs keep
//! their bearer tokens). A password is stored as an argon2id hash (a PHC string) and set
//! by the administrator; a session is a token of its own kind that lives a working day,
//! so checking it, expiring it and revoking it work as for every token.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

use crate::engine::{Actor, Engine};
use crate::error::{Error, Result};
use crate::store::TokenRecord;
use crate::tokens::hash_secret;

/// How long a session lives.
pub const SESSION_HOURS: i64 = 12;
/// The label that marks a token as a browser session.
pub const SESSION_LABEL: &str = "session";
/// Shortest password accepted.
pub const MIN_PASSWORD: usize = 10;

fn password_key(staff: &str) -> String {
    format!("password:{staff}")
}

impl Engine {
    /// Sets a staff member's password (the administrator's act; recorded). Returns the
    /// receipt of the change.
    pub fn set_password(&self, actor: &Actor, staff: &str, password: &str) -> Result<u64> {
        if !matches!(actor, Actor::Admin) {
            return Err(Error::Forbidden(
                "passwords are set by the administrator".into(),
            ));
        }
        if !self.rules().staff.contains_key(staff) {
            return Err(Error::Validation(format!(
                "staff '{staff}' is not in the office scripts"
            )));
        }
        let chars = password.chars().count();
        if chars < MIN_PASSWORD || password.len() > 1024 {
            return Err(Error::Validation(format!(
                "a password has {MIN_PASSWORD} characters at least (and 1024 bytes at most)"
            )));
        }
        let mut bytes = [0u8; 16];
        rand::Rng::fill(&mut rand::rng(), &mut bytes);
        let salt = SaltString::encode_b64(&bytes)
            .map_err(|e| Error::Store(format!("cannot make a salt: {e}")))?;
        let phc = Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| Error::Store(format!("cannot hash a password: {e}")))?
            .to_string();
        self.store()
            .put_meta(&password_key(staff), phc.as_bytes())?;
        self.store().append_audit(vec![crate::audit::Record::new(
            self.now(),
            actor.name(),
            "password.set",
            format!("staff:{staff}"),
        )])
    }

    /// Signs a staff member in with their password: a new session token and its secret,
    /// or `None` for a wrong id or password (the same answer for both; recorded).
    pub fn sign_in(&self, staff: &str, password: &str) -> Result<Option<(TokenRecord, String)>> {
        let stored = if self.rules().staff.contains_key(staff) {
            self.store().meta(&password_key(staff))?
        } else {
            None
        };
        let ok = stored
            .as_deref()
            .and_then(|phc| std::str::from_utf8(phc).ok())
            .and_then(|phc| PasswordHash::new(phc).ok())
            .is_some_and(|hash| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &hash)
                    .is_ok()
            });
        let now = self.now();
        if !ok {
            self.audit_or_warn(crate::audit::Record::new(
                now,
                "anonymous",
                "login.refused",
                format!("staff:{}", staff.chars().take(64).collect::<String>()),
            ));
            return Ok(None);
        }
        let (rec, secret) = self.new_token(
            staff,
            false,
            SESSION_LABEL,
            chrono::Duration::hours(SESSION_HOURS),
        )?;
        self.audit_or_warn(
            crate::audit::Record::new(now, staff, "session.opened", format!("token:{}", rec.id))
                .with_detail("signed in with a password".to_string()),
        );
        Ok(Some((rec, secret)))
    }

    /// Opens a browser session for the administrator, who proves it with the
    /// administrator token (there is no administrator password): a session token of 12
    /// hours, so the long-lived token is not kept in a cookie. `None` for anything but a
    /// valid administrator token (recorded).
    pub fn admin_session(&self, token: &str) -> Result<Option<(TokenRecord, String)>> {
        let now = self.now();
        if self.authenticate(token)? != Some(Actor::Admin) {
            self.audit_or_warn(crate::audit::Record::new(
                now,
                "anonymous",
                "login.refused",
                "admin".to_string(),
            ));
            return Ok(None);
        }
        let (rec, secret) = self.new_token(
            "admin",
            true,
            SESSION_LABEL,
            chrono::Duration::hours(SESSION_HOURS),
        )?;
        self.audit_or_warn(
            crate::audit::Record::new(now, "admin", "session.opened", format!("token:{}", rec.id))
                .with_detail("signed in with the administrator token".to_string()),
        );
        Ok(Some((rec, secret)))
    }

    /// Ends the session whose secret is `secret` (signing out): it is refused from now on.
    pub fn end_session(&self, secret: &str) -> Result<()> {
        let hash = hash_secret(secret);
        let Some(mut rec) = self.store().token_by_hash(&hash)? else {
            return Ok(());
        };
        if rec.label != SESSION_LABEL || rec.revoked_at.is_some() {
            return Ok(());
        }
        rec.revoked_at = Some(self.now());
        self.store().put_token(&hash, &rec)?;
        self.forget_token(&hash);
        self.audit_or_warn(crate::audit::Record::new(
            self.now(),
            rec.subject.clone(),
            "session.closed",
            format!("token:{}", rec.id),
        ));
        Ok(())
    }

    /// Whether a staff member has a password (the administrator's page shows it).
    pub fn has_password(&self, staff: &str) -> Result<bool> {
        Ok(self.store().meta(&password_key(staff))?.is_some())
    }
}
