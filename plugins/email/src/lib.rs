//! E-mail over SMTP (`lettre`): the `email` channel. Each notice becomes a plain-text
//! UTF-8 message with the notice id in its `Message-ID`, so a mail system that sees a
//! retry can tell it is the same message. A relay that accepts the message makes the
//! notice `sent`; a permanent SMTP refusal (5xx: no such mailbox) fails it; anything else
//! is retried.
//!
//! ```toml
//! [plugins.email]
//! host = "mail.office.example"    # an SMTP relay of the office
//! port = 25
//! from = "Guichet <noreply@office.example>"
//! username = "guichet"              # optional, with password or password_env
//! password_env = "GUICHET_SMTP_PASSWORD"
//! tls = "starttls"                  # default; "tls" (implicit, port 465) or "none"
//! ca_file = "/etc/guichet/internal-ca.pem"   # optional: a CA trusted besides the public ones
//! ```
//!
//! `starttls` (the default) upgrades the connection before anything is sent and refuses a
//! relay that does not offer it; `tls` speaks TLS from the first byte; both verify the
//! relay's certificate for `host` against the public authorities and `ca_file`. `none` is
//! plain SMTP for a relay on the office's own network, and never carries a password.

use guichet_core::plugin::{
    BoxFuture, Channel, Delivered, DeliveryError, Notice, Plugin, PluginError, Registrar,
};
use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;
use std::sync::Arc;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    host: String,
    #[serde(default = "default_port")]
    port: u16,
    from: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    password_env: Option<String>,
    /// Domain of Message-IDs (`<notice id>@<domain>`); the host if unset.
    #[serde(default)]
    message_id_domain: Option<String>,
    #[serde(default = "default_timeout")]
    timeout_ms: u64,
    #[serde(default)]
    tls: TlsMode,
    /// A PEM file of certificate authorities trusted besides the public ones.
    #[serde(default)]
    ca_file: Option<String>,
}

/// How the connection to the relay is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum TlsMode {
    /// STARTTLS, required.
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
    /// Plain SMTP.
    None,
}

fn default_port() -> u16 {
    25
}

fn default_timeout() -> u64 {
    20_000
}

/// The e-mail plugin: one channel, `email`.
pub struct Email {
    channel: Arc<Smtp>,
}

struct Smtp {
    from: Mailbox,
    domain: String,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

fn config_error(message: String) -> PluginError {
    PluginError::Config {
        plugin: "email".into(),
        message,
    }
}

impl Email {
    /// Reads and checks `[plugins.email]`: the sender parses as a mailbox, credentials are
    /// complete. Nothing is sent until a notice is due.
    pub fn from_config(value: &serde_json::Value) -> Result<Email, PluginError> {
        let c: Config =
            serde_json::from_value(value.clone()).map_err(|e| config_error(e.to_string()))?;
        let from: Mailbox = c
            .from
            .parse()
            .map_err(|e| config_error(format!("from '{}': {e}", c.from)))?;
        if c.host.trim().is_empty() {
            return Err(config_error("host is empty".into()));
        }
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&c.host)
            .port(c.port)
            .timeout(Some(std::time::Duration::from_millis(c.timeout_ms.max(1))));
        if c.tls != TlsMode::None {
            use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
            let mut params = TlsParameters::builder(c.host.clone());
            if let Some(file) = &c.ca_file {
                let pem = std::fs::read(file)
                    .map_err(|e| config_error(format!("ca_file {file}: {e}")))?;
                let cert = Certificate::from_pem(&pem)
                    .map_err(|e| config_error(format!("ca_file {file}: {e}")))?;
                params = params.add_root_certificate(cert);
            }
            let params = params
                .build_rustls()
                .map_err(|e| config_error(format!("tls: {e}")))?;
            builder = builder.tls(match c.tls {
                TlsMode::Tls => Tls::Wrapper(params),
                _ => Tls::Required(params),
            });
        }
        let password = match (&c.password, &c.password_env) {
            (Some(p), None) => Some(p.clone()),
            (None, Some(var)) => Some(
                std::env::var(var)
                    .map_err(|_| config_error(format!("environment variable {var} is not set")))?,
            ),
            (None, None) => None,
            _ => {
                return Err(config_error(
                    "give password or password_env, not both".into(),
                ))
            }
        };
        match (&c.username, password) {
            (Some(_), Some(_)) if c.tls == TlsMode::None => {
                return Err(config_error(
                    "a password is never sent in clear: use tls = \"starttls\" or \"tls\"".into(),
                ))
            }
            (Some(u), Some(p)) => builder = builder.credentials(Credentials::new(u.clone(), p)),
            (None, None) => {}
            _ => return Err(config_error("username and a password go together".into())),
        }
        Ok(Email {
            channel: Arc::new(Smtp {
                from,
                domain: c.message_id_domain.unwrap_or(c.host),
                transport: builder.build(),
            }),
        })
    }
}

impl Plugin for Email {
    fn name(&self) -> &str {
        "email"
    }

    fn register(&self, r: &mut Registrar) -> Result<(), PluginError> {
        r.channel(self.channel.clone());
        Ok(())
    }
}

impl Smtp {
    fn message(&self, n: &Notice) -> Result<Message, DeliveryError> {
        let to: Mailbox = n
            .address
            .parse()
            .map_err(|e| DeliveryError::Permanent(format!("address '{}': {e}", n.address)))?;
        let subject = if n.subject.is_empty() {
            n.case_number.clone()
        } else {
            n.subject.clone()
        };
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .message_id(Some(format!("<{}@{}>", n.id, self.domain)))
            .header(ContentType::TEXT_PLAIN)
            .body(n.body.clone())
            .map_err(|e| DeliveryError::Permanent(e.to_string()))
    }
}

impl Channel for Smtp {
    fn name(&self) -> &str {
        "email"
    }

    fn deliver<'a>(&'a self, n: &'a Notice) -> BoxFuture<'a, Result<Delivered, DeliveryError>> {
        Box::pin(async move {
            let msg = self.message(n)?;
            match self.transport.send(msg).await {
                Ok(_) => Ok(Delivered::Sent),
                Err(e) if e.is_permanent() => Err(DeliveryError::Permanent(e.to_string())),
                Err(e) => Err(DeliveryError::Transient(e.to_string())),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_sender_or_half_credentials_are_config_errors() {
        let bad = serde_json::json!({"host": "localhost", "from": "not an address"});
        assert!(Email::from_config(&bad).is_err());
        let half = serde_json::json!({"host": "localhost", "from": "a@b.example", "username": "u"});
        assert!(Email::from_config(&half).is_err());
        let ok =
            serde_json::json!({"host": "localhost", "port": 2525, "from": "Office <a@b.example>"});
        assert!(Email::from_config(&ok).is_ok());
        let clear = serde_json::json!({"host": "localhost", "from": "a@b.example", "tls": "none",
            "username": "u", "password": "p"});
        assert!(Email::from_config(&clear).is_err(), "no password in clear");
        let odd = serde_json::json!({"host": "localhost", "from": "a@b.example", "tls": "maybe"});
        assert!(Email::from_config(&odd).is_err());
    }
}
