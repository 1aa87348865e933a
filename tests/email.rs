//! E-mail through a real SMTP server: Python's `aiosmtpd` (installed by `.ci/run`) writes
//! what it receives to a maildir, and the test reads the message that arrived.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::TestServer;
use guichet_core::clock::SystemClock;
use serde_json::{json, Value};

struct Smtp {
    child: Child,
    port: u16,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn smtp_server(maildir: &Path) -> Smtp {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new("python3")
        .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
        .args(["-c", "aiosmtpd.handlers.Mailbox"])
        .arg(maildir)
        .stdout(Stdio::null())
        .spawn()
        .expect("python3 -m aiosmtpd (pip install aiosmtpd)");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Smtp { child, port };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("aiosmtpd did not start");
}

/// The messages in the maildir, with folded headers unfolded and a quoted-printable body
/// decoded, so the test reads what a mail client would show.
fn messages(maildir: &Path) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(maildir.join("new")) else {
        return Vec::new();
    };
    dir.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
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
    let maildir = tmp.path().join("mail");
    let smtp = smtp_server(&maildir).await;
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
        mail = messages(&maildir);
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
        if messages(&maildir).len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all = messages(&maildir).join("\n----\n");
    assert!(
        all.contains(&format!(
            "Subject: [Riverside District Service Hall] Decision on {number}"
        )),
        "{all}"
    );
    assert!(all.contains("has been decided: approved"), "{all}");
    drop(smtp);
}
