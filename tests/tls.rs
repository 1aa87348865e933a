//! TLS against a test certificate authority: the server's own HTTPS listener, webhooks to
//! an https receiver the office trusts through `ca_file`.

mod common;

use std::sync::Arc;

use common::tls::TestCa;
use common::*;
use guichet::config::Config;
use guichet_core::clock::SystemClock;
use reqwest::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_speaks_https_with_the_certificate_it_is_given() {
    let ca = TestCa::new();
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = (tmp.path().join("cert.pem"), tmp.path().join("key.pem"));
    std::fs::write(&cert, &ca.cert_pem).unwrap();
    std::fs::write(&key, &ca.key_pem).unwrap();
    let cfg = Config {
        scripts: example_scripts(),
        data: tmp.path().join("data"),
        tls_cert: Some(cert),
        tls_key: Some(key),
        ..Config::default()
    };
    let engine = guichet::server::open(&cfg).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        guichet::server::serve(listener, engine, &cfg, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    let trusting = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let url = format!("https://localhost:{port}/api/procedures");
    let mut answer = None;
    for _ in 0..100 {
        if let Ok(r) = trusting.get(&url).send().await {
            answer = Some(r);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let answer = answer.expect("https answers");
    assert_eq!(answer.status(), StatusCode::OK);
    assert!(answer.text().await.unwrap().contains("power.connection"));
    // A client that does not trust the authority refuses the server; plain HTTP gets no
    // HTTP answer.
    let err = reqwest::get(&url).await.expect_err("unknown authority");
    assert!(
        format!("{err:?}").to_lowercase().contains("certificate"),
        "{err:?}"
    );
    assert!(reqwest::get(format!("http://localhost:{port}/api/health"))
        .await
        .is_err());
    let _ = stop.send(());
    server.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_that_does_not_load_stops_the_start() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("nothing.pem");
    std::fs::write(&bad, "not a certificate").unwrap();
    let cfg = Config {
        scripts: example_scripts(),
        data: tmp.path().join("data"),
        tls_cert: Some(bad.clone()),
        tls_key: Some(bad),
        ..Config::default()
    };
    let engine = guichet::server::open(&cfg).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = guichet::server::serve(listener, engine, &cfg, async {})
        .await
        .expect_err("refused");
    assert!(format!("{err:#}").contains("tls_cert"), "{err:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_reach_an_https_receiver_the_office_trusts() {
    let ca = TestCa::new();
    let rx = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    rx.serve_tls(listener, ca.acceptor.clone());
    let tmp = tempfile::tempdir().unwrap();
    let ca_file = tmp.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.ca_pem).unwrap();
    let s = TestServer::start_configured(
        example_scripts(),
        tmp.path().join("data"),
        Arc::new(SystemClock),
        move |c| {
            let table: toml::Value = toml::from_str(&format!(
                "[channels.sms]\nurl = \"https://localhost:{port}/sms\"\nsecret = \"a-webhook-secret-of-some-length\"\nca_file = \"{}\"\n",
                ca_file.display()
            ))
            .unwrap();
            c.plugins.insert("webhook".into(), table);
        },
    )
    .await;
    let (_, number, _) = s.submit(power_case(400.0)).await;
    for _ in 0..100 {
        if !rx.hits("/sms").is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let hits = rx.hits("/sms");
    assert_eq!(hits.len(), 1, "the receipt, over https");
    assert!(String::from_utf8_lossy(&hits[0].body).contains(&number));
    assert!(hits[0].headers.contains_key("x-guichet-signature"));
}
