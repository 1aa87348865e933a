//! E-mail over real SMTP: the plugin's client (lettre) talks to an SMTP server in the test
//! that keeps what it receives, and the test reads the messages that arrived.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::TestServer;
use guichet_core::clock::SystemClock;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// An SMTP server that keeps what it receives in memory: the conversation a relay has
/// with a client (greeting, EHLO, MAIL, RCPT, DATA with its dot-stuffing, QUIT), no more.
/// The tests need nothing installed to receive mail.
struct SmtpSink {
    port: u16,
    received: Arc<Mutex<Vec<String>>>,
}

impl SmtpSink {
    async fn start() -> SmtpSink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let received: Arc<Mutex<Vec<String>>> = Arc::default();
        let kept = received.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let kept = kept.clone();
                tokio::spawn(async move {
                    let _ = session(sock, kept).await;
                });
            }
        });
        SmtpSink { port, received }
    }
}

async fn session(
    sock: tokio::net::TcpStream,
    kept: Arc<Mutex<Vec<String>>>,
) -> std::io::Result<()> {
    let (r, mut w) = sock.into_split();
    let mut r = BufReader::new(r);
    w.write_all(b"220 sink.test ESMTP\r\n").await?;
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let verb = line.trim_end().to_ascii_uppercase();
        if verb.starts_with("EHLO") {
            w.write_all(b"250-sink.test\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")
                .await?;
        } else if verb.starts_with("DATA") {
            w.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
            let mut message = String::new();
            loop {
                line.clear();
                if r.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                message.push_str(line.strip_prefix('.').unwrap_or(&line));
            }
            kept.lock().unwrap().push(message);
            w.write_all(b"250 queued\r\n").await?;
        } else if verb.starts_with("QUIT") {
            w.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            // HELO, MAIL FROM, RCPT TO, RSET, NOOP.
            w.write_all(b"250 ok\r\n").await?;
        }
    }
}

/// The messages received, with folded headers unfolded and a quoted-printable body
/// decoded, so the test reads what a mail client would show.
fn messages(sink: &SmtpSink) -> Vec<String> {
    let raw = sink.received.lock().unwrap().clone();
    raw.into_iter()
        .map(|raw| {
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
                "host = \"127.0.0.1\"\nport = {port}\nfrom = \"Riverside Service Hall <noreply@riverside.example>\""
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
