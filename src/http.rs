//! The connection layer under the router: accepts connections, enforces the header and
//! idle timeout (hyper's `header_read_timeout`, which also runs while a kept-alive
//! connection waits for its next request), caps connections in all and per client
//! address, tells the router who the peer is, speaks HTTPS when given a certificate
//! (rustls; the handshake bounded by the same timeout), and drains connections on
//! shutdown.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::config::LimitsConfig;

/// The TLS side of an HTTPS listener from PEM files: the certificate chain (the server's
/// first) and its private key.
pub fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use anyhow::Context;
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("tls_cert {}", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("tls_cert {}: no certificate in it", cert.display());
    }
    let key =
        PrivateKeyDer::from_pem_file(key).with_context(|| format!("tls_key {}", key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .context("tls_cert and tls_key do not make a usable certificate")?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Open connections per client address.
#[derive(Default)]
struct PerClient(Mutex<HashMap<IpAddr, usize>>);

/// One connection's place in [`PerClient`], given back when the connection ends.
struct Slot(Arc<PerClient>, IpAddr);

impl PerClient {
    fn take(this: &Arc<PerClient>, ip: IpAddr, max: usize) -> Option<Slot> {
        let mut m = this.0.lock();
        let n = m.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Slot(this.clone(), ip))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut m = self.0 .0.lock();
        if let Some(n) = m.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.1);
            }
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets open requests finish
/// (at most 30 s) and closes what is left. When this returns no connection holds `app`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &LimitsConfig,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let handshake_timeout = Duration::from_millis(limits.header_timeout_ms.max(1));
    let connections = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let per_client = Arc::new(PerClient::default());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(limits.header_timeout_ms.max(1)));
    tokio::pin!(shutdown);
    let mut open = tokio::task::JoinSet::new();
    loop {
        // Reap finished connections as we go.
        while open.try_join_next().is_some() {}
        let permit = tokio::select! {
            p = connections.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(message = "accept failed", error = %e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Some(slot) = PerClient::take(&per_client, peer.ip(), limits.connections_per_client)
        else {
            tracing::warn!(message = "connection refused: too many from one client", client = %peer.ip());
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = app.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            router.clone().oneshot(req)
        });
        let watcher = graceful.watcher();
        let builder = builder.clone();
        let tls = tls.clone();
        open.spawn(async move {
            match tls {
                None => {
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    let _ = watcher.watch(conn).await;
                }
                // In the connection's own task: a slow handshake holds up no one else.
                Some(acceptor) => {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let conn = builder.serve_connection(TokioIo::new(tls), service);
                            let _ = watcher.watch(conn).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(message = "TLS handshake failed", client = %peer.ip(), error = %e)
                        }
                        Err(_) => {
                            tracing::debug!(message = "TLS handshake timed out", client = %peer.ip())
                        }
                    }
                }
            }
            drop(slot);
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(Duration::from_secs(30)) => {
            tracing::warn!(message = "connections still open after 30 s; closing");
        }
    }
    open.shutdown().await;
    Ok(())
}
