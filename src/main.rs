//! The `guichet` command: serve an office, check its scripts, manage API tokens, verify
//! and export the audit log.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

/// glibc's malloc spends a quarter of a transition's CPU under many threads (measured with
/// `perf` on the throughput benchmark); mimalloc does not.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
use guichet::config::Config;
use guichet::server;

#[derive(Parser)]
#[command(
    name = "guichet",
    version,
    about = "Workflow server for offices that serve the public"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// TOML configuration file; flags and environment variables override it.
        #[arg(long, env = "GUICHET_CONFIG")]
        config: Option<PathBuf>,
        /// Scripts folder [default: ./scripts]
        #[arg(long, env = "GUICHET_SCRIPTS")]
        scripts: Option<PathBuf>,
        /// Data folder [default: ./data]
        #[arg(long, env = "GUICHET_DATA")]
        data: Option<PathBuf>,
        /// Listen address [default: 127.0.0.1:8080]
        #[arg(long, env = "GUICHET_LISTEN")]
        listen: Option<String>,
    },
    /// Load and validate a scripts folder and run its procedure tests (DIR/tests/); exit
    /// code 1 with the errors.
    Check {
        #[arg(default_value = "scripts")]
        dir: PathBuf,
    },
    /// Ask the running server for a consistent copy of its store (uploaded files
    /// included) into a new folder, while it serves.
    Backup {
        /// The new folder to write (on the server's machine).
        #[arg(long)]
        to: PathBuf,
        /// Server base URL.
        #[arg(long, env = "GUICHET_SERVER", default_value = "http://127.0.0.1:8080")]
        server: String,
        /// File holding an administrator token [default: ./data/admin.token]
        #[arg(long, env = "GUICHET_TOKEN_FILE")]
        token_file: Option<PathBuf>,
    },
    /// Move the store between backends.
    Store {
        #[command(subcommand)]
        action: StoreAction,
    },
    /// Put a backup in place as the store of a new data folder and verify its audit chain
    /// (then `guichet serve --data DIR`).
    Restore {
        /// The backup folder.
        #[arg(long)]
        from: PathBuf,
        /// The new data folder [default: ./data]
        #[arg(long, env = "GUICHET_DATA")]
        data: Option<PathBuf>,
    },
    /// Write a starter office into a new scripts folder: one department, its staff and
    /// groups, the calendar, the notices, one procedure and its procedure tests.
    Init { dir: PathBuf },
    /// Run the procedure tests (scenario files in DIR/tests/), each on a temporary store
    /// with a manual clock; exit code 1 if one fails.
    Test {
        #[arg(default_value = "scripts")]
        dir: PathBuf,
        /// Only the scenarios whose name or file contains this.
        #[arg(long)]
        only: Option<String>,
    },
    /// Verify or export the audit log of a data folder (the server must be stopped:
    /// sled allows one process per folder; a running server answers `/api/audit/verify`).
    Audit {
        /// Data folder [default: ./data]
        #[arg(long, env = "GUICHET_DATA", global = true)]
        data: Option<PathBuf>,
        #[command(subcommand)]
        action: AuditAction,
    },
    /// Fill a fresh data folder with a simulated year of the office: cases arriving and
    /// handled on a simulated clock, so the interface and the statistics have a history.
    Demo {
        /// Scripts folder [default: ./scripts]
        #[arg(long, env = "GUICHET_SCRIPTS")]
        scripts: Option<PathBuf>,
        /// Data folder to create [default: ./demo-data]
        #[arg(long)]
        data: Option<PathBuf>,
        /// Days simulated, ending yesterday.
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// Applications per service and working day, on average.
        #[arg(long, default_value_t = 1.2)]
        per_day: f64,
        #[arg(long, default_value_t = 2026)]
        seed: u64,
    },
    /// Statistics of a data folder (the server must be stopped).
    Stats {
        /// TOML configuration file (for its data and scripts folders and plugins).
        #[arg(long, env = "GUICHET_CONFIG", global = true)]
        config: Option<PathBuf>,
        /// Scripts folder [default: ./scripts]
        #[arg(long, env = "GUICHET_SCRIPTS", global = true)]
        scripts: Option<PathBuf>,
        /// Data folder [default: ./data]
        #[arg(long, env = "GUICHET_DATA", global = true)]
        data: Option<PathBuf>,
        #[command(subcommand)]
        action: StatsAction,
    },
    /// Issue, list and revoke API tokens, and set staff passwords, through a running
    /// server's admin API.
    Token {
        /// Server base URL.
        #[arg(
            long,
            env = "GUICHET_SERVER",
            default_value = "http://127.0.0.1:8080",
            global = true
        )]
        server: String,
        /// File holding an administrator token [default: ./data/admin.token]
        #[arg(long, env = "GUICHET_TOKEN_FILE", global = true)]
        token_file: Option<PathBuf>,
        #[command(subcommand)]
        action: TokenAction,
    },
}

#[derive(Subcommand)]
enum StoreAction {
    /// Copy the embedded store of a data folder (its server stopped) into an empty
    /// PostgreSQL database: cases, history, notices, timers, tokens, procedure versions,
    /// files and the audit chain, checked after.
    Copy {
        /// The data folder.
        #[arg(long)]
        from: PathBuf,
        /// postgres://user:password@host:port/database (an empty database).
        #[arg(long)]
        to: String,
    },
}

#[derive(Subcommand)]
enum StatsAction {
    /// Work every case's contribution to the statistics out again from its history.
    Rebuild,
}

#[derive(Subcommand)]
enum AuditAction {
    /// Walk the hash chain; exit code 1 naming the first entry that does not match.
    Verify,
    /// Print every entry as one JSON line, oldest first.
    Export,
}

#[derive(Subcommand)]
enum TokenAction {
    /// Issue a token for a staff member (or `admin`); prints the secret once.
    Issue {
        subject: String,
        #[arg(long, default_value = "")]
        label: String,
    },
    /// List tokens (ids, subjects, revocation), never secrets.
    List,
    /// Revoke a token by its id.
    Revoke { id: String },
    /// Set a staff member's password for signing in to the web pages; the password is
    /// read from standard input (one line), never from the command line.
    Password { staff: String },
}

/// The log on standard error (and, with the `otel` feature, the trace exporter); what it
/// returns sends the last traces when dropped.
fn logging(quiet: bool) -> anyhow::Result<Option<Box<dyn std::any::Any>>> {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_env("GUICHET_LOG")
        .unwrap_or_else(|_| if quiet { "error" } else { "info" }.into());
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    // One JSON object per line, its spans (the request id) included: for a log collector.
    // The filter is the log's own: traces keep their spans whatever the log level.
    let fmt = if std::env::var("GUICHET_LOG_FORMAT").as_deref() == Ok("json") {
        fmt.json()
            .with_current_span(true)
            .with_filter(filter)
            .boxed()
    } else {
        fmt.with_filter(filter).boxed()
    };
    let logs = tracing_subscriber::registry().with(fmt);
    #[cfg(feature = "otel")]
    if let Some((traces, flush)) = guichet::telemetry::otel::layer()? {
        logs.with(traces).init();
        return Ok(Some(Box::new(flush)));
    }
    logs.init();
    Ok(None)
}

fn main() -> ExitCode {
    guichet::server::disable_huge_pages();
    let cli = Cli::parse();
    // Checking and testing scripts print their own findings; the engine's log would bury them.
    let quiet = matches!(cli.command, Command::Check { .. } | Command::Test { .. });
    let _traces = match logging(quiet) {
        Ok(flush) => flush,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve {
            config,
            scripts,
            data,
            listen,
        } => serve(config, scripts, data, listen),
        Command::Check { dir } => return check(&dir),
        Command::Test { dir, only } => return test(&dir, only.as_deref()),
        Command::Init { dir } => init(&dir),
        Command::Backup {
            to,
            server,
            token_file,
        } => backup(&server, token_file, &to),
        Command::Store {
            action: StoreAction::Copy { from, to },
        } => store_copy(&from, &to),
        Command::Restore { from, data } => {
            restore(&from, &data.unwrap_or_else(|| PathBuf::from("data")))
        }
        Command::Audit { data, action } => return audit(data, action),
        Command::Demo {
            scripts,
            data,
            days,
            per_day,
            seed,
        } => demo(scripts, data, days, per_day, seed),
        Command::Stats {
            config,
            scripts,
            data,
            action: StatsAction::Rebuild,
        } => stats_rebuild(config, scripts, data),
        Command::Token {
            server,
            token_file,
            action,
        } => token(&server, token_file, action),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The configuration file (or the defaults), with the folders the flags name.
fn configured(
    config: Option<PathBuf>,
    scripts: Option<PathBuf>,
    data: Option<PathBuf>,
) -> anyhow::Result<Config> {
    let mut cfg = match config {
        Some(path) => Config::from_file(&path)?,
        None => Config::default(),
    };
    if let Some(s) = scripts {
        cfg.scripts = s;
    }
    if let Some(d) = data {
        cfg.data = d;
    }
    Ok(cfg)
}

fn serve(
    config: Option<PathBuf>,
    scripts: Option<PathBuf>,
    data: Option<PathBuf>,
    listen: Option<String>,
) -> anyhow::Result<()> {
    let mut cfg = configured(config, scripts, data)?;
    if let Some(l) = listen {
        cfg.listen = l;
    }
    // Before the runtime: opening the store blocks (a PostgreSQL client even refuses to
    // run on an async thread).
    let engine = server::open(&cfg)?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&cfg.listen).await?;
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!(message = "shutting down");
        };
        server::serve(listener, engine, &cfg, shutdown).await
    })
}

fn check(dir: &std::path::Path) -> ExitCode {
    match guichet_core::script::load_dir(dir) {
        Ok(rules) => {
            println!(
                "ok: {} procedures, {} departments, {} groups, {} staff, {} bundles",
                rules.procedures.len(),
                rules.departments.len(),
                rules.groups.len(),
                rules.staff.len(),
                rules.bundles.len()
            );
            for p in rules.procedures.values() {
                println!("  {} {} ({}) version {}", p.id, p.name, p.file, p.version);
            }
            for w in guichet_core::reload::warnings(&rules, chrono::Utc::now()) {
                eprintln!("warning: {w}");
            }
            if dir.join(guichet_core::script::scenario::TESTS_DIR).is_dir() {
                return test(dir, None);
            }
            ExitCode::SUCCESS
        }
        Err(problems) => {
            for p in &problems {
                eprintln!("{p}");
            }
            eprintln!("{} problem(s) in {}", problems.len(), dir.display());
            ExitCode::FAILURE
        }
    }
}

/// Writes the starter office and says what to do next.
fn init(dir: &std::path::Path) -> anyhow::Result<()> {
    for f in guichet::init::init(dir)? {
        println!("wrote {}", f.display());
    }
    let d = dir.display();
    println!(
        "\nNext:\n  guichet check {d}                             # load it and run its procedure tests\n  \
         guichet serve --scripts {d} --data {d}-data   # serve it; edit the files while it runs"
    );
    Ok(())
}

/// Runs the procedure tests and prints one line per scenario, each failure with its
/// `file:line:column`.
fn test(dir: &std::path::Path, only: Option<&str>) -> ExitCode {
    use guichet_core::script::scenario;
    if let Err(problems) = guichet_core::script::load_dir(dir) {
        for p in &problems {
            eprintln!("{p}");
        }
        eprintln!(
            "{} problem(s) in {}: no test run",
            problems.len(),
            dir.display()
        );
        return ExitCode::FAILURE;
    }
    let report = scenario::run_dir(dir, Default::default(), only);
    for p in &report.problems {
        eprintln!("{p}");
    }
    for o in &report.outcomes {
        match &o.failure {
            None => println!("ok    {}:{} {}", o.file, o.line, o.name),
            Some(f) => {
                println!("FAIL  {}:{} {}", o.file, o.line, o.name);
                println!("      {f}");
            }
        }
    }
    println!(
        "{} scenario(s): {} passed, {} failed",
        report.outcomes.len(),
        report.passed(),
        report.failed()
    );
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Simulates `days` of the office into a new data folder and prints the planning
/// bureau's figures in the spirit of the article.
fn demo(
    scripts: Option<PathBuf>,
    data: Option<PathBuf>,
    days: u32,
    per_day: f64,
    seed: u64,
) -> anyhow::Result<()> {
    let data = data.unwrap_or_else(|| PathBuf::from("demo-data"));
    if data.exists() && std::fs::read_dir(&data)?.next().is_some() {
        anyhow::bail!(
            "{} is not empty: the demo fills a new data folder",
            data.display()
        );
    }
    let cfg = Config {
        scripts: scripts.unwrap_or_else(|| PathBuf::from("scripts")),
        data: data.clone(),
        ..Config::default()
    };
    let today = chrono::Utc::now();
    let clock = Arc::new(guichet_core::clock::ManualClock::new(
        today - chrono::Duration::days(i64::from(days)),
    ));
    let engine = guichet::server::open_with_clock(&cfg, clock.clone())?;
    let plan = guichet::demo::DemoPlan {
        days,
        per_day,
        seed,
    };
    let started = std::time::Instant::now();
    let report = guichet::demo::run(&engine, &clock, &plan)?;
    engine.store().flush()?;
    println!(
        "{} days simulated in {:.1} s: {} cases, {} actions ({} refused as staff would find them), {} cards",
        days,
        started.elapsed().as_secs_f64(),
        report.cases,
        report.actions,
        report.refused,
        report.cards
    );
    let q = guichet_core::stats::StatsQuery {
        from: engine.rules().calendar.local_date(today) - chrono::Duration::days(i64::from(days)),
        to: engine.rules().calendar.local_date(today),
        by: guichet_core::stats::Grouping::Procedure,
        procedure: None,
        department: Some("planning".into()),
    };
    let r = engine.statistics(&guichet_core::Actor::Admin, &q)?;
    println!(
        "
Planning bureau, {} to {}:",
        r.from, r.to
    );
    println!(
        "{:<48} {:>7} {:>9} {:>8} {:>8} {:>9}",
        "item", "decided", "promised", "actual", "on time", "speed-up"
    );
    let pct = |v: Option<f64>| v.map_or("-".into(), |x| format!("{:.0} %", x * 100.0));
    let days_of = |v: Option<f64>| v.map_or("-".into(), |x| format!("{x:.1}"));
    for row in r.rows.iter().chain(std::iter::once(&r.total)) {
        println!(
            "{:<48} {:>7} {:>9} {:>8} {:>8} {:>9}",
            row.name,
            row.decided,
            days_of(row.promised_mean_days),
            days_of(row.mean_days),
            pct(row.on_time_promised),
            pct(row.speed_up)
        );
    }
    println!(
        "
Serve it with: guichet serve --data {}  (administrator token in {})",
        data.display(),
        guichet::server::admin_token_path(&data).display()
    );
    Ok(())
}

/// Reworks the statistics of a data folder from its history, with the office's scripts and
/// plugins as `serve` would load them.
fn stats_rebuild(
    config: Option<PathBuf>,
    scripts: Option<PathBuf>,
    data: Option<PathBuf>,
) -> anyhow::Result<()> {
    let cfg = configured(config, scripts, data)?;
    let engine = guichet::server::open(&cfg)?;
    let started = std::time::Instant::now();
    let n = engine.rebuild_statistics()?;
    engine.store().flush()?;
    println!(
        "statistics rebuilt from the history of {n} cases in {} ms",
        started.elapsed().as_millis()
    );
    Ok(())
}

fn audit(data: Option<PathBuf>, action: AuditAction) -> ExitCode {
    let data = data.unwrap_or_else(|| PathBuf::from("data"));
    let cfg = guichet::config::Config {
        data,
        cache_mb: 64,
        ..Default::default()
    };
    let store = match guichet_core::store::open(&cfg.store()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match action {
        AuditAction::Verify => match guichet_core::audit::verify(store.as_ref()) {
            Ok(v) => match &v.broken {
                None => {
                    println!("ok: {} entries, chain intact; head {}", v.entries, v.head);
                    ExitCode::SUCCESS
                }
                Some(b) => {
                    println!("BROKEN at entry {}: {}", b.seq, b.reason);
                    println!(
                        "the {} entries before it are intact; their head is {}",
                        v.entries, v.head
                    );
                    ExitCode::FAILURE
                }
            },
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        AuditAction::Export => {
            match guichet_core::audit::export(store.as_ref(), &mut std::io::stdout().lock()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// One call of the running server's administrator API with the administrator token of
/// `token_file` (default `./data/admin.token`): the answer, or the server's refusal.
fn admin_call(
    server: &str,
    token_file: Option<PathBuf>,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<serde_json::Value> {
    let file = token_file.unwrap_or_else(|| server::admin_token_path(std::path::Path::new("data")));
    let secret = std::fs::read_to_string(&file)
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot read the administrator token from {}: {e}",
                file.display()
            )
        })?
        .trim()
        .to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let url = format!("{}{path}", server.trim_end_matches('/'));
    rt.block_on(async move {
        let mut req = reqwest::Client::new()
            .request(method, url)
            .bearer_auth(&secret);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await?;
        if !status.is_success() {
            anyhow::bail!("{} ({}): {}", body["code"], status, body["message"]);
        }
        Ok(body)
    })
}

fn token(server: &str, token_file: Option<PathBuf>, action: TokenAction) -> anyhow::Result<()> {
    use reqwest::Method;
    let (method, path, body) = match &action {
        TokenAction::Issue { subject, label } => (
            Method::POST,
            "/api/admin/tokens".to_string(),
            Some(serde_json::json!({ "subject": subject, "label": label })),
        ),
        TokenAction::List => (Method::GET, "/api/admin/tokens".to_string(), None),
        TokenAction::Revoke { id } => (Method::DELETE, format!("/api/admin/tokens/{id}"), None),
        TokenAction::Password { staff } => {
            let mut password = String::new();
            std::io::stdin().read_line(&mut password)?;
            let password = password.trim_end_matches(['\r', '\n']);
            (
                Method::POST,
                "/api/admin/passwords".to_string(),
                Some(serde_json::json!({ "staff": staff, "password": password })),
            )
        }
    };
    let body = admin_call(server, token_file, method, &path, body)?;
    match action {
        TokenAction::Issue { .. } => {
            println!("{}", body["token"].as_str().unwrap_or_default());
            eprintln!(
                "token id {} for {}; the secret above is shown only once",
                body["record"]["id"], body["record"]["subject"]
            );
        }
        TokenAction::List => {
            for t in body["tokens"].as_array().into_iter().flatten() {
                println!(
                    "{}\t{}\t{}\t{}",
                    t["id"].as_str().unwrap_or_default(),
                    t["subject"].as_str().unwrap_or_default(),
                    t["created_at"].as_str().unwrap_or_default(),
                    t["revoked_at"]
                        .as_str()
                        .map(|r| format!("revoked {r}"))
                        .unwrap_or_else(|| "active".into())
                );
            }
        }
        TokenAction::Revoke { id } => println!("revoked {id}"),
        TokenAction::Password { staff } => println!("password set for {staff}"),
    }
    Ok(())
}

/// Asks the running server for a consistent copy of its store into `to` (a new folder).
fn backup(server: &str, token_file: Option<PathBuf>, to: &std::path::Path) -> anyhow::Result<()> {
    // The server resolves the path on its own machine, from its own working folder.
    let to = std::path::absolute(to)?;
    let body = admin_call(
        server,
        token_file,
        reqwest::Method::POST,
        "/api/admin/backup",
        Some(serde_json::json!({ "to": to })),
    )?;
    let b = &body["backup"];
    println!(
        "backup in {}: {} files, {} bytes; writes waited {} ms, {} ms in all",
        to.display(),
        b["files"],
        b["bytes"],
        b["held_ms"],
        b["ms"]
    );
    Ok(())
}

/// Puts a backup in place as the store of a new data folder, then verifies its audit
/// chain (the server must not run on that folder).
/// Copies the embedded store of a data folder (no server running on it) into an empty
/// PostgreSQL database, then checks the copy (cases, history, the same audit chain).
fn store_copy(from: &std::path::Path, to: &str) -> anyhow::Result<()> {
    if !to.starts_with("postgres://") && !to.starts_with("postgresql://") {
        anyhow::bail!("--to takes a PostgreSQL address (postgres://user:password@host/database)");
    }
    if !from.join("store").is_dir() {
        anyhow::bail!(
            "{} holds no embedded store (no store folder)",
            from.display()
        );
    }
    let source = Config {
        data: from.to_path_buf(),
        cache_mb: 64,
        ..Default::default()
    };
    let source = guichet_core::store::open(&source.store())?;
    let target = guichet_core::store::open(&guichet_core::store::StoreConfig::Postgres {
        url: to.to_string(),
        connections: 2,
        lease: std::time::Duration::from_secs(60),
        ca_file: None,
    })?;
    let started = std::time::Instant::now();
    let report = guichet_core::store::copy(source.as_ref(), target.as_ref())?;
    println!(
        "copied in {:.1} s: {} cases, {} history events, {} notices, {} timer groups, {} files, {} other records; audit chain intact in the copy: {} entries, head {}",
        started.elapsed().as_secs_f64(),
        report.cases,
        report.events,
        report.notices,
        report.timer_groups,
        report.files,
        report.others,
        report.audit_entries,
        report.audit_head
    );
    println!(
        "serve it with `store = \"{}\"` in guichet.toml",
        guichet_core::store::without_password(to)
    );
    Ok(())
}

/// An address without its password, for printing.
fn restore(from: &std::path::Path, data: &std::path::Path) -> anyhow::Result<()> {
    let store = data.join("store");
    if store.exists() && std::fs::read_dir(&store)?.next().is_some() {
        anyhow::bail!(
            "{} already holds a store: restore into a new data folder",
            store.display()
        );
    }
    if !from.join("db").is_file() {
        anyhow::bail!("{} is not a backup (no db file)", from.display());
    }
    copy_dir(from, &store)?;
    let cfg = Config {
        data: data.to_path_buf(),
        cache_mb: 64,
        ..Default::default()
    };
    let opened = guichet_core::store::open(&cfg.store())?;
    let verdict = guichet_core::audit::verify(opened.as_ref())?;
    if let Some(b) = &verdict.broken {
        anyhow::bail!(
            "restored, but the audit chain is BROKEN at entry {}: {}",
            b.seq,
            b.reason
        );
    }
    println!(
        "restored into {}; audit chain intact: {} entries, head {}",
        data.display(),
        verdict.entries,
        verdict.head
    );
    Ok(())
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
