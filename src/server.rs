//! Opening an office (scripts + data folder) and serving it. Tests call [`open`] and
//! [`serve`] with a listener on `127.0.0.1:0`; the binary does the same with its config.

use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use guichet_core::clock::SystemClock;
use guichet_core::plugin::{Plugin, Registrar};
use guichet_core::Engine;
use tokio::net::TcpListener;

use crate::api::{router, AppState};
use crate::config::Config;

/// Turns transparent huge pages off for this process; call it first thing. The allocator
/// asks the kernel for huge pages, and the first touch of one zeroes 2 MiB: a thread
/// preempted in the middle of that while it holds sled's log buffer or a case's lock
/// stalls every commit behind it. Measured (docs/performance.md): flushes of 5 to 20 ms
/// and a p99 near 20 ms at 5,000 transitions/s with them, 4 to 8 ms without.
pub fn disable_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_THP_DISABLE only sets a flag on this process; it reads
    // no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// Where the first administrator token is written.
pub fn admin_token_path(data: &Path) -> PathBuf {
    data.join("admin.token")
}

/// Opens the store and loads the scripts. On an empty store, creates the first
/// administrator token in `<data>/admin.token`, readable by the owner only.
pub fn open(config: &Config) -> anyhow::Result<Arc<Engine>> {
    open_with_clock(config, Arc::new(SystemClock))
}

/// As [`open`], with the engine reading time from `clock` (tests pass a manual one).
pub fn open_with_clock(
    config: &Config,
    clock: Arc<dyn guichet_core::clock::Clock>,
) -> anyhow::Result<Arc<Engine>> {
    open_with(config, clock, Vec::new())
}

/// As [`open_with_clock`], with plugins besides those the config enables (a custom
/// server, an example, a test).
pub fn open_with(
    config: &Config,
    clock: Arc<dyn guichet_core::clock::Clock>,
    extra: Vec<Box<dyn Plugin>>,
) -> anyhow::Result<Arc<Engine>> {
    let registrar = plugin_registrar(config, extra)?;
    std::fs::create_dir_all(&config.data)?;
    let store = guichet_core::store::open(&config.store())?;
    let engine = Engine::open_with(store, &config.scripts, clock, Arc::new(registrar))?;
    if let Some(secret) = engine.bootstrap_admin()? {
        let path = admin_token_path(&config.data);
        write_private(&path, &secret)?;
        tracing::warn!(message = "first start: administrator token created", file = %path.display());
        eprintln!(
            "First start: the administrator token is in {} (readable by you only).",
            path.display()
        );
    }
    let rules = engine.rules();
    tracing::info!(
        message = "office loaded",
        office = %rules.office.name,
        procedures = rules.procedures.len(),
        groups = rules.groups.len(),
        staff = rules.staff.len()
    );
    Ok(Arc::new(engine))
}

/// Builds and registers the plugins: those the config enables, then `extra`. A plugin
/// whose config is wrong stops the start with its message.
pub fn plugin_registrar(config: &Config, extra: Vec<Box<dyn Plugin>>) -> anyhow::Result<Registrar> {
    let mut plugins = crate::plugins::from_config(config)?;
    plugins.extend(extra);
    let registrar = Registrar::with(&plugins)?;
    for p in &plugins {
        tracing::info!(message = "plugin registered", plugin = p.name());
    }
    Ok(registrar)
}

fn write_private(path: &Path, secret: &str) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    writeln!(f, "{secret}")?;
    f.sync_all()
}

/// Serves the API on `listener` until `shutdown` resolves, then drains requests.
pub async fn serve(
    listener: TcpListener,
    engine: Arc<Engine>,
    config: &Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // A certificate that cannot be used stops the start, before anything runs.
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(crate::http::tls_acceptor(cert, key)?),
        (None, None) => None,
        _ => anyhow::bail!("tls_cert and tls_key go together"),
    };
    let pool = crate::pool::Pool::start_with(
        engine.clone(),
        config.engine_threads()?,
        std::time::Duration::from_millis(config.limits.script_ms.max(1)),
    );
    let state = AppState::new(
        engine.clone(),
        pool.clone(),
        &config.limits,
        config.max_body_kb * 1024,
        config.max_upload_mb << 20,
    );
    // The metrics recorder, before anything counts.
    crate::telemetry::handle();
    let app = router(state);
    let watch = if config.watch {
        Some(crate::watch::start(
            engine.clone(),
            &config.scripts,
            std::time::Duration::from_millis(config.reload_debounce_ms),
            std::time::Duration::from_secs(config.rescan_secs.max(1)),
        )?)
    } else {
        None
    };
    let (stop, stopping) = crate::background::channel();
    let mut loops = crate::workers::start(&engine, &stopping);
    loops.push(crate::scheduler::start(&engine, stopping.clone()));
    loops.push(crate::outbox::start(
        &engine,
        &config.outbox,
        stopping.clone(),
    ));
    loops.push(crate::maintenance::start(
        &engine,
        config.data.clone(),
        stopping,
    ));
    tracing::info!(message = "listening", addr = %listener.local_addr()?, https = tls.is_some());
    crate::http::serve(listener, app, &config.limits, tls, shutdown).await?;
    // Every loop finishes the pass it is in, then returns.
    stop.stop();
    for task in loops {
        if let Err(e) = task.await {
            tracing::error!(message = "a background loop failed", error = %e);
        }
    }
    // The watcher (a reload under way finishes), the engine threads (what was queued runs
    // and is answered after a last flush), a last flush for the background loops' writes:
    // blocking, so on a thread of its own, which finishes even if this runtime is being
    // dropped (nobody then awaits it). The engine is released when it is done.
    let (done, finished) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("shutdown".into())
        .spawn(move || {
            if let Some(w) = watch {
                w.stop();
            }
            pool.shutdown();
            drop(pool);
            let flushed = engine.flush().map(drop);
            drop(engine);
            let _ = done.send(flushed);
        })?;
    finished.await??;
    Ok(())
}
