//! Tokens: issuing, checking (from a cache after the first use), revoking; the first
//! administrator token; applicant tokens (an HMAC of the case id, no write per case).

use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::engine::{Actor, Engine};
use crate::error::{Error, Result};
use crate::store::TokenRecord;

pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Staff and administrator tokens live this long unless the issuer says otherwise.
pub const DEFAULT_TOKEN_DAYS: u32 = 90;

pub const MAX_TOKEN_DAYS: u32 = 366;

const APPLICANT_TOKEN_PREFIX: &str = "gca_";

/// HMAC-SHA256 (RFC 2104) of a case id under the applicant key, the first 20 bytes in
/// hex: a token costs no write per submission.
fn mac_of(key: &[u8], case: u64) -> String {
    use hmac::Mac;
    // HMAC takes a key of any length.
    let Ok(mut mac) = hmac::Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(&case.to_be_bytes());
    hex::encode(&mac.finalize().into_bytes()[..20])
}

const APPLICANT_KEY: &str = "applicant_token_key";

impl Engine {
    /// Issues a token for a staff member (or the administrator), valid for `days` days
    /// (at most [`MAX_TOKEN_DAYS`]); the secret is returned once, only its hash is kept.
    /// Creates and stores a token (only the hash of its secret is kept); returns it with
    /// the secret.
    pub(crate) fn new_token(
        &self,
        subject: &str,
        admin: bool,
        label: &str,
        lifetime: chrono::Duration,
    ) -> Result<(TokenRecord, String)> {
        let mut bytes = [0u8; 32];
        rand::rng().fill(&mut bytes);
        let secret = format!("gch_{}", hex::encode(bytes));
        let hash = hash_secret(&secret);
        let now = self.clock.now();
        let rec = TokenRecord {
            id: hash[..12].to_string(),
            subject: subject.to_string(),
            admin,
            label: label.to_string(),
            created_at: now,
            revoked_at: None,
            expires_at: Some(now + lifetime),
        };
        self.store.put_token(&hash, &rec)?;
        Ok((rec, secret))
    }

    pub fn issue_token(
        &self,
        by: &str,
        subject: &str,
        label: &str,
        days: Option<u32>,
    ) -> Result<(TokenRecord, String, u64)> {
        let admin = subject == "admin";
        if !admin && !self.rules().staff.contains_key(subject) {
            return Err(Error::Validation(format!(
                "staff '{subject}' is not in the office scripts"
            )));
        }
        let days = days.unwrap_or(DEFAULT_TOKEN_DAYS);
        if days == 0 || days > MAX_TOKEN_DAYS {
            return Err(Error::Validation(format!(
                "a token lives 1 to {MAX_TOKEN_DAYS} days"
            )));
        }
        if label.len() > 200 {
            return Err(Error::Validation("a label has at most 200 bytes".into()));
        }
        let (rec, secret) =
            self.new_token(subject, admin, label, chrono::Duration::days(days.into()))?;
        let now = rec.created_at;
        let ticket = self.store.append_audit(vec![crate::audit::Record::new(
            now,
            by,
            "token.issued",
            format!("token:{}", rec.id),
        )
        .with_detail(format!("for {subject}, {days} days"))])?;
        Ok((rec, secret, ticket))
    }

    /// What [`Engine::authenticate`] answers, from memory only: `None` when the token
    /// must be looked up in the store (a staff token's first use since start).
    pub fn authenticate_cached(&self, secret: &str) -> Option<Option<Actor>> {
        if let Some(rest) = secret.strip_prefix(APPLICANT_TOKEN_PREFIX) {
            return Some(self.applicant_token_case(rest).map(Actor::Applicant));
        }
        let (actor, expires, checked) =
            self.token_cache.read().get(&hash_secret(secret)).cloned()?;
        if !self.token_fresh(checked) {
            return None;
        }
        Some(
            expires
                .is_none_or(|e| self.clock.now() < e)
                .then_some(actor),
        )
    }

    /// The actor a bearer secret stands for, if it is valid, not revoked and not expired.
    /// A staff token's first use after each start is audited as a login.
    pub fn authenticate(&self, secret: &str) -> Result<Option<Actor>> {
        if let Some(rest) = secret.strip_prefix(APPLICANT_TOKEN_PREFIX) {
            return Ok(self.applicant_token_case(rest).map(Actor::Applicant));
        }
        let hash = hash_secret(secret);
        let now = self.clock.now();
        let cached = self.token_cache.read().get(&hash).cloned();
        if let Some((a, expires, checked)) = &cached {
            if self.token_fresh(*checked) {
                return Ok(expires.is_none_or(|e| now < e).then_some(a.clone()));
            }
        }
        let Some(rec) = self.store.token_by_hash(&hash)? else {
            self.forget_token(&hash);
            return Ok(None);
        };
        if rec.revoked_at.is_some() || rec.expires_at.is_some_and(|e| now >= e) {
            // Revoked on another node of a shared store, perhaps.
            self.forget_token(&hash);
            return Ok(None);
        }
        let actor = if rec.admin {
            Actor::Admin
        } else {
            Actor::Staff(rec.subject.clone())
        };
        self.token_cache.write().insert(
            hash,
            (actor.clone(), rec.expires_at, std::time::Instant::now()),
        );
        if cached.is_some() {
            // Checked again, not a new login.
            return Ok(Some(actor));
        }
        self.audit_or_warn(crate::audit::Record::new(
            now,
            actor.name(),
            "login",
            format!("token:{}", rec.id),
        ));
        Ok(Some(actor))
    }

    /// Whether a cached token may be used without asking the store: always on a store of
    /// this process alone (a revocation here clears the cache); on a store other nodes
    /// share, for a second, so that a revocation on any node holds everywhere within it.
    fn token_fresh(&self, checked: std::time::Instant) -> bool {
        !self.store.shared() || checked.elapsed() < std::time::Duration::from_secs(1)
    }

    /// Drops a token from the cache: its next use reads the store (after a revocation).
    pub(crate) fn forget_token(&self, hash: &str) {
        self.token_cache.write().remove(hash);
    }

    pub fn tokens(&self) -> Result<Vec<TokenRecord>> {
        let mut v: Vec<TokenRecord> = self.store.tokens()?.into_iter().map(|(_, r)| r).collect();
        v.sort_by_key(|a| a.created_at);
        Ok(v)
    }

    pub fn revoke_token(&self, actor: &Actor, id: &str) -> Result<(TokenRecord, u64)> {
        let (hash, mut rec) = self
            .store
            .tokens()?
            .into_iter()
            .find(|(_, r)| r.id == id)
            .ok_or_else(|| Error::NotFound(format!("token {id} not found")))?;
        if rec.revoked_at.is_none() {
            rec.revoked_at = Some(self.clock.now());
            self.store.put_token(&hash, &rec)?;
        }
        self.forget_token(&hash);
        let ticket = self.store.append_audit(vec![crate::audit::Record::new(
            self.clock.now(),
            actor.name(),
            "token.revoked",
            format!("token:{id}"),
        )
        .with_detail(format!("of {}", rec.subject))])?;
        Ok((rec, ticket))
    }

    /// When no administrator token is usable (first start, or all revoked or expired),
    /// creates one; the caller writes it where only the operator can read it.
    pub fn bootstrap_admin(&self) -> Result<Option<String>> {
        let now = self.clock.now();
        let usable = self.store.tokens()?.into_iter().any(|(_, r)| {
            r.admin && r.revoked_at.is_none() && r.expires_at.is_none_or(|e| now < e)
        });
        if usable {
            return Ok(None);
        }
        Ok(Some(
            self.issue_token(
                "system",
                "admin",
                "created at start: no usable administrator token",
                Some(MAX_TOKEN_DAYS),
            )?
            .1,
        ))
    }

    /// The server's signing key for applicant tokens, created on first use.
    pub(crate) fn applicant_key(&self) -> Result<Vec<u8>> {
        if let Some(k) = self.applicant_key.get() {
            return Ok(k.clone());
        }
        let key = match self.store.meta(APPLICANT_KEY)? {
            Some(k) => k,
            None => {
                let mut bytes = [0u8; 32];
                rand::rng().fill(&mut bytes);
                self.store.put_meta(APPLICANT_KEY, &bytes)?;
                bytes.to_vec()
            }
        };
        Ok(self.applicant_key.get_or_init(|| key).clone())
    }

    fn applicant_mac(&self, case: u64) -> Result<String> {
        let key = self.applicant_key()?;
        Ok(mac_of(&key, case))
    }

    /// A bearer token that reaches one case as its applicant, handed out at submission.
    pub fn applicant_token(&self, case: u64) -> Result<String> {
        Ok(format!(
            "{APPLICANT_TOKEN_PREFIX}{case}_{}",
            self.applicant_mac(case)?
        ))
    }

    /// The case an applicant token reaches, checked against the key in memory (loaded
    /// at open): no store read.
    fn applicant_token_case(&self, rest: &str) -> Option<u64> {
        let (id, mac) = rest.split_once('_')?;
        let id: u64 = id.parse().ok()?;
        let want = mac_of(self.applicant_key.get()?, id);
        bool::from(want.as_bytes().ct_eq(mac.as_bytes())).then_some(id)
    }
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    /// Applicant tokens handed out before the `hmac` crate was used must stay valid: the
    /// MAC is the same HMAC-SHA256 the server computed by hand (RFC 2104).
    #[test]
    fn applicant_macs_are_rfc_2104_hmac_sha256() {
        let key = [7u8; 32];
        let case = 42u64;
        let mut k = [0u8; 64];
        k[..32].copy_from_slice(&key);
        let inner: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
        let outer: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
        let ih = Sha256::new()
            .chain_update(&inner)
            .chain_update(case.to_be_bytes())
            .finalize();
        let oh = Sha256::new()
            .chain_update(&outer)
            .chain_update(ih)
            .finalize();
        assert_eq!(super::mac_of(&key, case), hex::encode(&oh[..20]));
    }
}
