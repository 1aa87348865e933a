//! The PostgreSQL store: the same tables as the embedded store, as SQL tables in one
//! database that several Guichet nodes share. A commit is one call of
//! `guichet_commit_batch` (one round trip, one transaction), which does not wait for the
//! disk; the commits of one case each that the node's engine threads make at the same
//! moment, new cases among them, go in one call together (`batch`). A flush makes every
//! commit of the node durable at once (a synchronous commit after them), and the server answers a transition only after it
//! (acknowledged means on disk, as with the embedded store's group commit). The node
//! keeps the cases it committed, and a task action starts from its copy instead of
//! reading the case (`case_to_change`; the commit's revision check finds a copy that
//! another node made stale, and the action is then worked out again on the stored case).
//! Case numbers are taken from a counter row in the commit's transaction, so they stay
//! gap-free across nodes: a new case expects the number after the last one its node
//! took or handed out (a scope's new cases queue in the order of their numbers, and
//! several go in one call), and the call takes it if it is still the next one (else
//! nothing of the case is written, and it draws its number in a transaction under the
//! counter row's lock). The audit chain is appended under the lock of its head row, so
//! it stays one chain whichever node commits: a transition
//! commits its audit records as pending, and they are sealed into the chain in batches
//! (by the maintenance of any node, and before the chain is read). Timers are
//! taken with `FOR UPDATE SKIP LOCKED` and a lease: one node fires a group, and another
//! takes it over once the lease of a node that died has run out.
//!
//! The schema is created and migrated when the store opens (`migrations`, in order, each
//! once, recorded in `guichet_schema`).

mod batch;
mod cases;
mod conn;
mod import;
mod tables;

use parking_lot::RwLock;
use r2d2_postgres::PostgresConnectionManager;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{Error, Result};
use crate::store::{BackupReport, Fault, Receipt, Store};

type Pool = r2d2::Pool<conn::Manager>;
type Conn = r2d2::PooledConnection<conn::Manager>;

/// The schema's versions, applied in order.
const MIGRATIONS: &[&str] = &[
    include_str!("schema.sql"),
    include_str!("schema2.sql"),
    include_str!("schema3.sql"),
    include_str!("schema4.sql"),
    include_str!("schema5.sql"),
];

/// How long a node holds the timers and notices it took before another node may take
/// them, unless configured.
const DEFAULT_LEASE: chrono::Duration = chrono::Duration::seconds(60);

pub struct PgStore {
    /// Taken when the store is dropped (see `Drop`).
    pool: Option<Pool>,
    /// This node's name in the leases it takes (random per start: a restarted node is
    /// another node, and waits for the leases of its former self like any other).
    node: String,
    lease: chrono::Duration,
    /// Commits made through this handle (receipts).
    written: AtomicU64,
    fault: RwLock<Option<Fault>>,
    /// Commits known durable (receipts up to this one).
    durable: AtomicU64,
    /// Flushes take turns.
    flushing: parking_lot::Mutex<()>,
    /// Statistics entries read with cases, by case: (case revision, entry's revision and
    /// bytes).
    read_with_cases: parking_lot::Mutex<std::collections::HashMap<u64, FiguresRead>>,
    /// Cases as this node last committed them, with their statistics entries: read for
    /// their next change without a round trip (`case_to_change`).
    changed: parking_lot::Mutex<std::collections::HashMap<u64, Arc<Changed>>>,
    /// The last case number this node took or handed out to a new case, by scope.
    numbers: parking_lot::Mutex<std::collections::HashMap<String, NumberSlot>>,
    /// Commits of the engine threads waiting to be made together.
    batcher: batch::Batcher,
}

/// The last case number of a scope this node took or handed out (`None`: not known), held
/// by a new case of the scope until its commit is queued.
type NumberSlot = Arc<parking_lot::Mutex<Option<i64>>>;

/// A case as committed, with its statistics entry (revision and bytes).
type Changed = (crate::case::Case, (i64, Vec<u8>));

/// A statistics entry read with a case: the case's revision, and the entry (its revision
/// and bytes) if there is one.
type FiguresRead = (u64, Option<(i64, Vec<u8>)>);

/// An error and its causes, as one line (a TLS failure says why only in its source).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// TLS for the connections (used as `sslmode` says: `prefer`, PostgreSQL's default, falls
/// back to plain when the server offers none; `require` refuses that).
fn tls(ca_file: Option<&std::path::Path>) -> Result<MakeRustlsConnect> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(file) = ca_file {
        let bad = |e: &dyn std::fmt::Display| {
            Error::Validation(format!("store_ca_file {}: {e}", file.display()))
        };
        for cert in rustls::pki_types::CertificateDer::pem_file_iter(file).map_err(|e| bad(&e))? {
            roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::Store(format!("tls: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // Closing a connection blocks on the client's own runtime, which panics on an
        // async thread, where the last holder of the engine may drop it: closed on a
        // thread of their own.
        if let Some(pool) = self.pool.take() {
            let _ = std::thread::spawn(move || drop(pool)).join();
        }
    }
}

/// Store errors of the database and the pool.
pub(super) trait Pg<T> {
    fn pg(self) -> Result<T>;
}

impl<T> Pg<T> for std::result::Result<T, postgres::Error> {
    fn pg(self) -> Result<T> {
        self.map_err(|e| {
            let Some(db) = e.as_db_error() else {
                // No answer from the database: a broken connection, a server gone (a
                // failover under way). The client may try again.
                return Error::Unavailable(format!("the database is out of reach: {}", chain(&e)));
            };
            let code = db.code().code();
            match code {
                // Text with a NUL character, or bytes the encoding refuses.
                "22021" | "22P05" => Error::Validation(
                    "text with a NUL character or an invalid byte cannot be stored".into(),
                ),
                // Serialization failure, deadlock: the same request may well pass now.
                "40001" | "40P01" => Error::Conflict(format!(
                    "the database asked to try again ({code}); reload and try again"
                )),
                // Connection exceptions, a server shutting down or starting, a read-only
                // standby (before the failover ends): retry later.
                c if c.starts_with("08") || c.starts_with("57P") || c == "25006" => {
                    Error::Unavailable(format!("the database is not available: {db}"))
                }
                _ => Error::Store(format!("postgres: {db}")),
            }
        })
    }
}

impl<T> Pg<T> for std::result::Result<T, r2d2::Error> {
    fn pg(self) -> Result<T> {
        // No connection within the pool's timeout.
        self.map_err(|e| Error::Unavailable(format!("the database is out of reach: {e}")))
    }
}

/// Whether PostgreSQL's text can hold `s` (not a NUL character): a lookup by a key it
/// cannot hold finds nothing, rather than failing.
pub(super) fn storable(s: &str) -> bool {
    !s.contains('\0')
}

/// A count or an id as PostgreSQL's BIGINT.
pub(super) fn big(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A BIGINT read back (never negative for what Guichet writes).
pub(super) fn unsigned(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`, with
    /// `?sslmode=require` for TLS) with a pool of `connections`, and brings the schema up
    /// to date. TLS trusts Mozilla's roots and, with `ca_file`, the PEM certificates in it.
    pub fn open(url: &str, connections: u32, ca_file: Option<&std::path::Path>) -> Result<PgStore> {
        let config: postgres::Config = url
            .parse()
            .map_err(|e| Error::Store(format!("postgres: bad address: {e}")))?;
        let manager = conn::Manager::new(PostgresConnectionManager::new(config, tls(ca_file)?));
        // One connection first, for its own error (the pool would only time out).
        r2d2::ManageConnection::connect(&manager).map_err(|e| {
            Error::Unavailable(format!("cannot connect to the database: {}", chain(&e)))
        })?;
        // Connections opened as calls need them, up to `connections`, and closed after ten
        // idle minutes: a quiet node holds few of the database's connections.
        let pool = r2d2::Pool::builder()
            .max_size(connections.max(1))
            .min_idle(Some(connections.clamp(1, 4)))
            .connection_timeout(std::time::Duration::from_secs(10))
            .build(manager)
            .pg()?;
        let store = PgStore {
            pool: Some(pool),
            node: format!("{:016x}", rand::random::<u64>()),
            lease: DEFAULT_LEASE,
            written: AtomicU64::new(0),
            fault: RwLock::new(None),
            durable: AtomicU64::new(0),
            flushing: parking_lot::Mutex::new(()),
            read_with_cases: parking_lot::Mutex::new(std::collections::HashMap::new()),
            changed: parking_lot::Mutex::new(std::collections::HashMap::new()),
            numbers: parking_lot::Mutex::new(std::collections::HashMap::new()),
            batcher: batch::Batcher::default(),
        };
        store.migrate()?;
        // Acknowledged means committed only if a commit waits for the disk.
        let sync: String = store
            .conn()?
            .query_one("SHOW synchronous_commit", &[])
            .pg()?
            .get(0);
        if sync == "off" {
            tracing::warn!(
                message = "PostgreSQL's synchronous_commit is off: an answered transition may be lost if the database crashes",
                synchronous_commit = %sync
            );
        }
        Ok(store)
    }

    /// How long this node holds what it takes (timers, notices to deliver).
    pub fn with_lease(mut self, lease: std::time::Duration) -> PgStore {
        self.lease = chrono::Duration::from_std(lease).unwrap_or(DEFAULT_LEASE);
        self
    }

    fn conn(&self) -> Result<Conn> {
        self.pool
            .as_ref()
            .ok_or_else(|| Error::Store("the store is closed".into()))?
            .get()
            .pg()
    }

    /// Applies the migrations not applied yet, each in a transaction; nodes starting
    /// together take turns (an advisory lock).
    fn migrate(&self) -> Result<()> {
        let mut c = self.conn()?;
        let mut tx = c.transaction().pg()?;
        tx.execute("SELECT pg_advisory_xact_lock(7204171)", &[])
            .pg()?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS guichet_schema (
                 version INTEGER PRIMARY KEY,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .pg()?;
        let applied: i32 = tx
            .query_one("SELECT COALESCE(max(version), 0) FROM guichet_schema", &[])
            .pg()?
            .get(0);
        if applied as usize > MIGRATIONS.len() {
            return Err(Error::Store(format!(
                "the database's schema (version {applied}) is newer than this Guichet's ({}): upgrade Guichet",
                MIGRATIONS.len()
            )));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
            let version = i as i32 + 1;
            tx.batch_execute(sql).pg()?;
            tx.execute(
                "INSERT INTO guichet_schema (version) VALUES ($1)",
                &[&version],
            )
            .pg()?;
            tracing::info!(message = "database schema migrated", version);
        }
        tx.commit().pg()
    }

    fn receipt(&self) -> Receipt {
        self.written.fetch_add(1, Ordering::SeqCst) + 1
    }
}

impl Store for PgStore {
    fn available(&self) -> bool {
        // Without waiting (readiness is asked on the server's async threads): the pool
        // drops connections found broken, so none left means the database is out of reach.
        self.pool
            .as_ref()
            .is_some_and(|p| p.state().connections > 0)
    }

    fn shared(&self) -> bool {
        true
    }

    fn maintain(&self) -> Result<Option<String>> {
        // PostgreSQL keeps itself (autovacuum, its own checkpoints); the audit records
        // committed since are sealed into the chain.
        let sealed = self.seal_audit()?;
        Ok((sealed > 0).then(|| format!("{sealed} audit entries sealed")))
    }

    fn set_fault(&self, fault: Option<Fault>) {
        *self.fault.write() = fault;
    }

    fn export(&self, _f: &mut dyn FnMut(crate::store::Item) -> Result<()>) -> Result<()> {
        Err(Error::Validation(
            "a copy goes from the embedded store to PostgreSQL; between PostgreSQL databases \
             use pg_dump"
                .into(),
        ))
    }

    fn import(&self, items: Vec<crate::store::Item>) -> Result<()> {
        self.import_items(items)
    }

    fn is_empty(&self) -> Result<bool> {
        self.is_empty_impl()
    }

    fn backup(&self, _to: &std::path::Path) -> Result<BackupReport> {
        Err(Error::Validation(
            "a PostgreSQL store is backed up with PostgreSQL's own tools (pg_dump, or \
             pg_basebackup with WAL archiving): see docs/deployment.md"
                .into(),
        ))
    }
}

/// The fault a test injected, if any.
impl PgStore {
    pub(super) fn fault(&self) -> Option<Fault> {
        self.fault.read().clone()
    }
}
