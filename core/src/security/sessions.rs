//! Staff passwords and sign-in sessions, for people working in a browser (programs keep
//! their bearer tokens). A password is stored as an argon2id hash (a PHC string) and set
//! by the administrator; a session is a token of its own kind that lives a working day,
//! so checking it, expiring it and revoking it work as for every token.
//!
//! Instead of choosing a password for someone, the administrator may hand out a one-time
//! link: whoever opens it within three days sets the staff member's password once. Only
//! the newest link of a staff member works; it is not a token and opens no session.

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

/// How long a one-time password link stays valid.
pub const PASSWORD_LINK_HOURS: i64 = 72;

fn password_key(staff: &str) -> String {
    format!("password:{staff}")
}

fn link_key(hash: &str) -> String {
    format!("password_link:{hash}")
}

fn latest_link_key(staff: &str) -> String {
    format!("password_link_of:{staff}")
}

/// A one-time password link as stored (under the hash of its secret).
#[derive(serde::Serialize, serde::Deserialize)]
struct PasswordLink {
    staff: String,
    expires_at: chrono::DateTime<chrono::Utc>,
    #[serde(default)]
    used_at: Option<chrono::DateTime<chrono::Utc>>,
}

fn check_password(password: &str) -> Result<()> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD || password.len() > 1024 {
        return Err(Error::Validation(format!(
            "a password has {MIN_PASSWORD} characters at least (and 1024 bytes at most)"
        )));
    }
    Ok(())
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
        check_password(password)?;
        self.store_password(staff, password)?;
        self.store().append_audit(vec![crate::audit::Record::new(
            self.now(),
            actor.name(),
            "password.set",
            format!("staff:{staff}"),
        )])
    }

    fn store_password(&self, staff: &str, password: &str) -> Result<()> {
        let mut bytes = [0u8; 16];
        rand::Rng::fill(&mut rand::rng(), &mut bytes);
        let salt = SaltString::encode_b64(&bytes)
            .map_err(|e| Error::Store(format!("cannot make a salt: {e}")))?;
        let phc = Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| Error::Store(format!("cannot hash a password: {e}")))?
            .to_string();
        self.store().put_meta(&password_key(staff), phc.as_bytes())
    }

    /// Makes a one-time link for a staff member to set their own password (the
    /// administrator's act; recorded): its secret, to put in the link, and when it
    /// expires. An earlier link of the same staff member stops working.
    pub fn password_link(
        &self,
        actor: &Actor,
        staff: &str,
    ) -> Result<(String, chrono::DateTime<chrono::Utc>, u64)> {
        if !matches!(actor, Actor::Admin) {
            return Err(Error::Forbidden(
                "password links are made by the administrator".into(),
            ));
        }
        if !self.rules().staff.contains_key(staff) {
            return Err(Error::Validation(format!(
                "staff '{staff}' is not in the office scripts"
            )));
        }
        let mut bytes = [0u8; 32];
        rand::Rng::fill(&mut rand::rng(), &mut bytes);
        let secret = hex::encode(bytes);
        let hash = hash_secret(&secret);
        let expires_at = self.now() + chrono::Duration::hours(PASSWORD_LINK_HOURS);
        let link = PasswordLink {
            staff: staff.to_string(),
            expires_at,
            used_at: None,
        };
        self.store()
            .put_meta(&link_key(&hash), &serde_json::to_vec(&link)?)?;
        self.store()
            .put_meta(&latest_link_key(staff), hash.as_bytes())?;
        let receipt = self.store().append_audit(vec![crate::audit::Record::new(
            self.now(),
            actor.name(),
            "password.link_issued",
            format!("staff:{staff}"),
        )])?;
        Ok((secret, expires_at, receipt))
    }

    /// The staff member a one-time link is for, if it still works (unused, unexpired,
    /// the newest of theirs).
    pub fn password_link_staff(&self, secret: &str) -> Result<Option<String>> {
        Ok(self.live_link(secret)?.map(|(_, link)| link.staff))
    }

    fn live_link(&self, secret: &str) -> Result<Option<(String, PasswordLink)>> {
        let hash = hash_secret(secret);
        let Some(raw) = self.store().meta(&link_key(&hash))? else {
            return Ok(None);
        };
        let link: PasswordLink = serde_json::from_slice(&raw)?;
        let newest = self.store().meta(&latest_link_key(&link.staff))?;
        let live = link.used_at.is_none()
            && link.expires_at > self.now()
            && newest.as_deref() == Some(hash.as_bytes())
            && self.rules().staff.contains_key(&link.staff);
        Ok(live.then_some((hash, link)))
    }

    /// Sets a password through a one-time link, which then stops working. `None` if the
    /// link does not work (any reason: the same answer); a password too short is a
    /// validation error that leaves the link usable.
    pub fn redeem_password_link(&self, secret: &str, password: &str) -> Result<Option<u64>> {
        let Some((hash, mut link)) = self.live_link(secret)? else {
            self.audit_or_warn(crate::audit::Record::new(
                self.now(),
                "anonymous",
                "password.link_refused",
                "password_link".to_string(),
            ));
            return Ok(None);
        };
        check_password(password)?;
        link.used_at = Some(self.now());
        // Used first: a crash in between leaves the old password and a spent link (ask
        // for another), never a link that works twice.
        self.store()
            .put_meta(&link_key(&hash), &serde_json::to_vec(&link)?)?;
        self.store_password(&link.staff, password)?;
        let receipt = self.store().append_audit(vec![crate::audit::Record::new(
            self.now(),
            link.staff.clone(),
            "password.set",
            format!("staff:{}", link.staff),
        )
        .with_detail("with a one-time link".to_string())])?;
        Ok(Some(receipt))
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
