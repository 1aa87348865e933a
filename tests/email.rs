//! E-mail over real SMTP: the plugin's client (lettre) talks to an SMTP server in the test
//! that keeps what it receives, and the test reads the messages that arrived.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::tls::TestCa;
use common::TestServer;
use guichet_core::clock::SystemClock;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// How the sink protects its connections.
#[derive(Clone)]
enum SinkTls {
    None,
    /// Offers STARTTLS and upgrades when asked.
    Starttls(tokio_rustls::TlsAcceptor),
    /// TLS from the first byte.
    Implicit(tokio_rustls::TlsAcceptor),
}

/// An SMTP server that keeps what it receives in memory: the conversation a relay has
/// with a client (greeting, EHLO, STARTTLS if offered, MAIL, RCPT, DATA with its
/// dot-stuffing, QUIT), no more. The tests need nothing installed to receive mail.
struct SmtpSink {
    port: u16,
    /// Each message, and whether it came over TLS.
    received: Arc<Mutex<Vec<(String, bool)>>>,
}

impl SmtpSink {
    async fn start() -> SmtpSink {
        Self::start_with(SinkTls::None).await
    }

    async fn start_with(tls: SinkTls) -> SmtpSink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let received: Arc<Mutex<Vec<(String, bool)>>> = Arc::default();
        let kept = received.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let (kept, tls) = (kept.clone(), tls.clone());
                tokio::spawn(async move {
                    let _ = connection(sock, kept, tls).await;
                });
            }
        });
        SmtpSink { port, received }
    }
}

async fn connection(
    sock: tokio::net::TcpStream,
    kept: Arc<Mutex<Vec<(String, bool)>>>,
    tls: SinkTls,
) -> std::io::Result<()> {
    match tls {
        SinkTls::None => session(sock, &kept, None, true, false).await.map(drop),
        SinkTls::Implicit(acceptor) => {
            let s = acceptor.accept(sock).await?;
            session(s, &kept, None, true, true).await.map(drop)
        }
        SinkTls::Starttls(acceptor) => {
            if let Some(sock) = session(sock, &kept, Some(&acceptor), true, false).await? {
                let s = acceptor.accept(sock).await?;
                // After the upgrade the client starts again with EHLO, without a greeting.
                session(s, &kept, None, false, true).await?;
            }
            Ok(())
        }
    }
}

/// One SMTP conversation on `stream`; the stream back if the client asked for STARTTLS.
async fn session<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: S,
    kept: &Mutex<Vec<(String, bool)>>,
    starttls: Option<&tokio_rustls::TlsAcceptor>,
    greet: bool,
    secure: bool,
) -> std::io::Result<Option<S>> {
    let mut s = BufReader::new(stream);
    if greet {
        s.write_all(b"220 sink.test ESMTP\r\n").await?;
    }
    let mut line = String::new();
    loop {
        line.clear();
        if s.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        let verb = line.trim_end().to_ascii_uppercase();
        if verb.starts_with("EHLO") {
            // AUTH only once the connection is private, as real relays do.
            let mut ehlo = String::from("250-sink.test\r\n");
            if starttls.is_some() {
                ehlo.push_str("250-STARTTLS\r\n");
            }
            if secure {
                ehlo.push_str("250-AUTH PLAIN LOGIN\r\n");
            }
            ehlo.push_str("250-8BITMIME\r\n250 SMTPUTF8\r\n");
            s.write_all(ehlo.as_bytes()).await?;
        } else if verb.starts_with("AUTH") && secure {
            s.write_all(b"235 authenticated\r\n").await?;
        } else if verb.starts_with("STARTTLS") && starttls.is_some() {
            s.write_all(b"220 go ahead\r\n").await?;
            s.flush().await?;
            return Ok(Some(s.into_inner()));
        } else if verb.starts_with("DATA") {
            s.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
            let mut message = String::new();
            loop {
                line.clear();
                if s.read_line(&mut line).await? == 0 {
                    return Ok(None);
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                message.push_str(line.strip_prefix('.').unwrap_or(&line));
            }
            kept.lock().unwrap().push((message, secure));
            s.write_all(b"250 queued\r\n").await?;
        } else if verb.starts_with("QUIT") {
            s.write_all(b"221 bye\r\n").await?;
            return Ok(None);
        } else {
            // HELO, MAIL FROM, RCPT TO, RSET, NOOP.
            s.write_all(b"250 ok\r\n").await?;
        }
    }
}

/// The messages received, with folded headers unfolded and a quoted-printable body
/// decoded, so the test reads what a mail client would show.
fn messages(sink: &SmtpSink) -> Vec<String> {
    let raw = sink.received.lock().unwrap().clone();
    raw.into_iter()
        .map(|(raw, _)| {
            let raw = raw.replace("\r\n", "\n");
            let (head, body) = raw.split_once("\n\n").unwrap_or((&raw, ""));
            let head = head.replace("\n ", " ").replace("\n\t", " ");
            let body = if head.contains("quoted-printable") {
                decode_qp(&body.replace("=\n", ""))
            } else {
                body.to_string()
            };
            format!("{head}\n\n{body}")
        })
        .collect()
}

fn decode_qp(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (b[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'=', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).to_string()
}

#[tokio::test]
async fn the_receipt_and_the_decision_arrive_by_email() {
    let tmp = tempfile::tempdir().unwrap();
    let smtp = SmtpSink::start().await;
    let port = smtp.port;
    let s = TestServer::start_configured(
        common::example_scripts(),
        tmp.path().join("data"),
        Arc::new(SystemClock),
        move |c| {
            let table: toml::Value = toml::from_str(&format!(
                "host = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nfrom = \"Riverside Service Hall <noreply@riverside.example>\""
            ))
            .unwrap();
            c.plugins.insert("email".into(), table);
        },
    )
    .await;
    let (id, number, code) = s
        .submit(json!({
            "procedure": "tax.invoice_purchase",
            "applicant": { "id": "91310000MA1FL0099X", "name": "Acme Trading",
                           "email": "finance@acme.example", "language": "en" },
            "data": { "invoice_kind": "ordinary", "monthly_quantity": 25 },
        }))
        .await;

    let mut mail = Vec::new();
    for _ in 0..100 {
        mail = messages(&smtp);
        if !mail.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(mail.len(), 1, "one receipt");
    let m = &mail[0];
    assert!(m.contains("To: finance@acme.example"), "{m}");
    assert!(
        m.contains("From: \"Riverside Service Hall\" <noreply@riverside.example>"),
        "{m}"
    );
    assert!(
        m.contains(&format!(
            "Subject: [Riverside District Service Hall] Application received: {number}"
        )),
        "{m}"
    );
    assert!(m.contains(&format!("query code {code}")), "{m}");
    assert!(
        m.contains(&format!("Message-ID: <{id}-0-0@127.0.0.1>")),
        "{m}"
    );

    // Sent: handed to the relay (SMTP does not confirm delivery to the mailbox).
    let mut status = Value::Null;
    for _ in 0..100 {
        let (_, v) = s.get(&format!("/api/cases/{id}/notices"), &s.admin).await;
        status = v["notices"][0]["status"].clone();
        if status == "sent" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, "sent");

    let (window, officer) = (s.token("wang.fang").await, s.token("li.wei").await);
    s.act(&window, id, "intake", "accept", json!({})).await;
    s.act(&officer, id, "site_visit", "approve", json!({}))
        .await;
    for _ in 0..100 {
        if messages(&smtp).len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all = messages(&smtp).join("\n----\n");
    assert!(
        all.contains(&format!(
            "Subject: [Riverside District Service Hall] Decision on {number}"
        )),
        "{all}"
    );
    assert!(all.contains("has been decided: approved"), "{all}");
}

/// A receipt sent through a relay protected as `tls` says, the plugin configured with
/// `mode`; whether it arrived over TLS.
async fn receipt_through(tls: SinkTls, mode: &str, ca: &TestCa) -> Vec<(String, bool)> {
    let tmp = tempfile::tempdir().unwrap();
    let ca_file = tmp.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.ca_pem).unwrap();
    let smtp = SmtpSink::start_with(tls).await;
    let port = smtp.port;
    let mode = mode.to_string();
    let s = TestServer::start_configured(
        common::example_scripts(),
        tmp.path().join("data"),
        Arc::new(SystemClock),
        move |c| {
            let table: toml::Value = toml::from_str(&format!(
                "host = \"localhost\"\nport = {port}\ntls = \"{mode}\"\nca_file = \"{}\"\nusername = \"guichet\"\npassword = \"secret\"\nfrom = \"Service Hall <noreply@riverside.example>\"",
                ca_file.display()
            ))
            .unwrap();
            c.plugins.insert("email".into(), table);
            c.outbox.first_retry_ms = 50;
        },
    )
    .await;
    s.submit(json!({
        "procedure": "tax.invoice_purchase",
        "applicant": { "id": "91310000MA1FL0099X", "name": "Acme Trading", "email": "finance@acme.example" },
        "data": { "invoice_kind": "ordinary", "monthly_quantity": 25 },
    }))
    .await;
    for _ in 0..60 {
        if !smtp.received.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = smtp.received.lock().unwrap().clone();
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_goes_over_starttls_or_implicit_tls_to_a_relay_the_office_trusts() {
    let ca = TestCa::new();
    let got = receipt_through(SinkTls::Starttls(ca.acceptor.clone()), "starttls", &ca).await;
    assert_eq!(got.len(), 1, "the receipt");
    assert!(got[0].1, "sent after STARTTLS");
    let got = receipt_through(SinkTls::Implicit(ca.acceptor.clone()), "tls", &ca).await;
    assert_eq!(got.len(), 1);
    assert!(got[0].1, "sent over TLS from the first byte");
    // A relay that offers no STARTTLS gets nothing: the message is never sent in clear.
    let got = receipt_through(SinkTls::None, "starttls", &ca).await;
    assert!(got.is_empty(), "sent in clear: {got:?}");
}
