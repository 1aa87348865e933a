//! Webhooks: every configured endpoint becomes a notification channel (an SMS gateway, a
//! messaging app) or an event subscriber (an archive, another office's system). Each
//! delivery is an HTTP POST of JSON with
//!
//! - `X-Guichet-Delivery`: the notice id, the same on every retry (deduplicate by it);
//! - `X-Guichet-Timestamp`: seconds since 1970 when this attempt was signed;
//! - `X-Guichet-Signature`: `sha256=` + hex HMAC-SHA256 of `<timestamp>.<body>` with the
//!   endpoint's secret.
//!
//! A 2xx answer is a delivery; 408, 429, 5xx and network errors are retried; any other
//! answer fails the notice with the receiver's status.
//!
//! ```toml
//! [plugins.webhook.channels.sms]
//! url = "https://sms-gateway.example/send"
//! secret_env = "GUICHET_SMS_SECRET"   # or: secret = "..."
//!
//! [plugins.webhook.subscribers.archive]
//! url = "https://archive.example/events"
//! secret = "..."
//! events = ["case.decided", "case.withdrawn"]
//! ca_file = "/etc/guichet/internal-ca.pem"   # optional: a CA trusted besides the public ones
//! ```
//!
//! `https` endpoints are verified against the public certificate authorities (Mozilla's
//! list, compiled in) and, with `ca_file`, the PEM certificates in that file.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use guichet_core::plugin::{
    BoxFuture, Channel, Delivered, DeliveryError, Event, Notice, Plugin, PluginError, Registrar,
    Subscriber, EVENT_KINDS,
};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Endpoint {
    url: String,
    #[serde(default)]
    secret: Option<String>,
    /// Name of an environment variable holding the secret (keeps it out of the file).
    #[serde(default)]
    secret_env: Option<String>,
    /// Subscribers only: event kinds wanted; empty means all.
    #[serde(default)]
    events: Vec<String>,
    #[serde(default = "default_timeout")]
    timeout_ms: u64,
    /// A PEM file of certificate authorities trusted besides the public ones (an
    /// office's internal CA).
    #[serde(default)]
    ca_file: Option<String>,
}

fn default_timeout() -> u64 {
    10_000
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    channels: BTreeMap<String, Endpoint>,
    #[serde(default)]
    subscribers: BTreeMap<String, Endpoint>,
}

/// The webhook plugin: channels and subscribers from `[plugins.webhook]`.
pub struct Webhooks {
    channels: Vec<Arc<Hook>>,
    subscribers: Vec<Arc<Hook>>,
}

struct Hook {
    name: String,
    url: reqwest::Url,
    secret: Vec<u8>,
    events: Vec<String>,
    client: reqwest::Client,
}

fn config_error(message: String) -> PluginError {
    PluginError::Config {
        plugin: "webhook".into(),
        message,
    }
}

impl Webhooks {
    /// Reads and checks `[plugins.webhook]`: URLs parse, every endpoint has a secret.
    pub fn from_config(value: &serde_json::Value) -> Result<Webhooks, PluginError> {
        let config: Config =
            serde_json::from_value(value.clone()).map_err(|e| config_error(e.to_string()))?;
        let build = |kind: &str, name: &str, e: &Endpoint| -> Result<Arc<Hook>, PluginError> {
            let url = reqwest::Url::parse(&e.url)
                .map_err(|err| config_error(format!("{kind}.{name}: url '{}': {err}", e.url)))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(config_error(format!(
                    "{kind}.{name}: url must be http or https"
                )));
            }
            let secret = match (&e.secret, &e.secret_env) {
                (Some(s), None) => s.clone(),
                (None, Some(var)) => std::env::var(var).map_err(|_| {
                    config_error(format!(
                        "{kind}.{name}: environment variable {var} is not set"
                    ))
                })?,
                _ => {
                    return Err(config_error(format!(
                        "{kind}.{name}: give exactly one of secret or secret_env"
                    )))
                }
            };
            if secret.len() < 16 {
                return Err(config_error(format!(
                    "{kind}.{name}: the secret must be at least 16 bytes"
                )));
            }
            for ev in &e.events {
                if !EVENT_KINDS.contains(&ev.as_str()) {
                    return Err(config_error(format!("{kind}.{name}: unknown event '{ev}'")));
                }
            }
            let mut client =
                reqwest::Client::builder().timeout(Duration::from_millis(e.timeout_ms.max(1)));
            if let Some(file) = &e.ca_file {
                let pem = std::fs::read(file)
                    .map_err(|err| config_error(format!("{kind}.{name}: ca_file {file}: {err}")))?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem)
                    .map_err(|err| config_error(format!("{kind}.{name}: ca_file {file}: {err}")))?;
                if certs.is_empty() {
                    return Err(config_error(format!(
                        "{kind}.{name}: ca_file {file} holds no PEM certificate"
                    )));
                }
                for cert in certs {
                    client = client.add_root_certificate(cert);
                }
            }
            let client = client
                .build()
                .map_err(|err| config_error(err.to_string()))?;
            Ok(Arc::new(Hook {
                name: name.to_string(),
                url,
                secret: secret.into_bytes(),
                events: e.events.clone(),
                client,
            }))
        };
        Ok(Webhooks {
            channels: config
                .channels
                .iter()
                .map(|(n, e)| build("channels", n, e))
                .collect::<Result<_, _>>()?,
            subscribers: config
                .subscribers
                .iter()
                .map(|(n, e)| build("subscribers", n, e))
                .collect::<Result<_, _>>()?,
        })
    }
}

impl Plugin for Webhooks {
    fn name(&self) -> &str {
        "webhook"
    }

    fn register(&self, r: &mut Registrar) -> Result<(), PluginError> {
        for c in &self.channels {
            r.channel(c.clone());
        }
        for s in &self.subscribers {
            r.subscriber(s.clone());
        }
        Ok(())
    }
}

/// `sha256=<hex>` of HMAC-SHA256 over `<timestamp>.<body>`: what a receiver recomputes.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        // HMAC takes keys of any length; this branch cannot be taken.
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl Hook {
    async fn post(&self, id: &str, body: Vec<u8>) -> Result<Delivered, DeliveryError> {
        let ts = chrono::Utc::now().timestamp();
        let sig = signature(&self.secret, ts, &body);
        let res = self
            .client
            .post(self.url.clone())
            .header("content-type", "application/json")
            .header("x-guichet-delivery", id)
            .header("x-guichet-timestamp", ts.to_string())
            .header("x-guichet-signature", sig)
            .body(body)
            .send()
            .await
            .map_err(|e| DeliveryError::Transient(format!("{}: {e}", self.name)))?;
        let status = res.status();
        if status.is_success() {
            return Ok(Delivered::Delivered);
        }
        let text: String = res
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect();
        let msg = format!("{}: receiver answered {status}: {text}", self.name);
        if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
            Err(DeliveryError::Transient(msg))
        } else {
            Err(DeliveryError::Permanent(msg))
        }
    }
}

impl Channel for Hook {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver<'a>(&'a self, n: &'a Notice) -> BoxFuture<'a, Result<Delivered, DeliveryError>> {
        Box::pin(async move {
            let body = serde_json::json!({
                "id": n.id,
                "event": n.event,
                "case": n.case,
                "case_number": n.case_number,
                "channel": n.channel,
                "recipient": n.recipient,
                "to": n.address,
                "language": n.language,
                "subject": n.subject,
                "body": n.body,
            });
            let bytes =
                serde_json::to_vec(&body).map_err(|e| DeliveryError::Permanent(e.to_string()))?;
            self.post(&n.id, bytes).await
        })
    }
}

impl Subscriber for Hook {
    fn name(&self) -> &str {
        &self.name
    }

    fn events(&self) -> Vec<String> {
        self.events.clone()
    }

    fn on_event<'a>(
        &'a self,
        id: &'a str,
        e: &'a Event,
    ) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            let bytes =
                serde_json::to_vec(e).map_err(|err| DeliveryError::Permanent(err.to_string()))?;
            self.post(id, bytes).await.map(|_| ())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Expected value computed independently with Python's hmac module.
        assert_eq!(
            signature(b"0123456789abcdef", 1700000000, b"{\"a\":1}"),
            "sha256=9eb18f493f8ec135d9eb2dad817c369bb4e9cbfa818657897a7437c1cd8c3a23"
        );
    }

    #[test]
    fn a_missing_secret_or_bad_url_is_a_config_error() {
        let bad = serde_json::json!({"channels": {"sms": {"url": "ftp://x", "secret": "0123456789abcdef"}}});
        assert!(Webhooks::from_config(&bad).is_err());
        let nosecret = serde_json::json!({"channels": {"sms": {"url": "http://x"}}});
        assert!(Webhooks::from_config(&nosecret).is_err());
        let unknown = serde_json::json!({"channel": {}});
        assert!(Webhooks::from_config(&unknown).is_err());
        let ok = serde_json::json!({"channels": {"sms": {"url": "http://x/", "secret": "0123456789abcdef"}}});
        assert!(Webhooks::from_config(&ok).is_ok());
    }
}
