//! Which backend a server runs on, from its configuration.

use std::path::PathBuf;
use std::sync::Arc;

use super::{SledStore, Store};
use crate::error::Result;

/// The store a server opens. Its `Debug` leaves the database's password out.
#[derive(Clone)]
pub enum StoreConfig {
    /// The embedded store: sled in a folder of the machine, one process per folder.
    Embedded {
        path: PathBuf,
        /// sled's page cache, in bytes.
        cache_bytes: u64,
        /// A checkpoint runs once this much was written (0: never) ...
        checkpoint_bytes: u64,
        /// ... and nothing was written for this long.
        checkpoint_idle: std::time::Duration,
        /// How far a flush carries acknowledged writes.
        durability: super::Durability,
    },
    /// PostgreSQL, shared by every node of the office (built with the `postgres`
    /// feature).
    Postgres {
        /// `postgres://user:password@host:port/database`.
        url: String,
        /// The pool's size.
        connections: u32,
        /// How long a node holds the timers and notices it took.
        lease: std::time::Duration,
        /// PEM certificates trusted for TLS to the database besides Mozilla's roots.
        ca_file: Option<PathBuf>,
    },
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreConfig::Embedded {
                path,
                cache_bytes,
                checkpoint_bytes,
                checkpoint_idle,
                durability,
            } => f
                .debug_struct("Embedded")
                .field("path", path)
                .field("cache_bytes", cache_bytes)
                .field("checkpoint_bytes", checkpoint_bytes)
                .field("checkpoint_idle", checkpoint_idle)
                .field("durability", durability)
                .finish(),
            StoreConfig::Postgres {
                url,
                connections,
                lease,
                ca_file,
            } => f
                .debug_struct("Postgres")
                .field("url", &without_password(url))
                .field("connections", connections)
                .field("lease", lease)
                .field("ca_file", ca_file)
                .finish(),
        }
    }
}

/// A database address with its password (if any) replaced by `***`, fit for a log.
pub fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // The `key=value` form.
        return url
            .split(' ')
            .map(|kv| match kv.split_once('=') {
                Some(("password", _)) => "password=***",
                _ => kv,
            })
            .collect::<Vec<_>>()
            .join(" ");
    };
    // The credentials end at the last `@` before the path (a password may hold `@`).
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    match authority.rsplit_once('@') {
        Some((credentials, host)) => match credentials.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{}", &rest[authority.len()..]),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// Opens the configured backend.
pub fn open(config: &StoreConfig) -> Result<Arc<dyn Store>> {
    match config {
        StoreConfig::Embedded {
            path,
            cache_bytes,
            checkpoint_bytes,
            checkpoint_idle,
            durability,
        } => {
            let store = SledStore::open(path, *cache_bytes)?
                .with_checkpoints(*checkpoint_bytes, *checkpoint_idle)
                .with_durability(*durability);
            Ok(Arc::new(store))
        }
        #[cfg(feature = "postgres")]
        StoreConfig::Postgres {
            url,
            connections,
            lease,
            ca_file,
        } => Ok(Arc::new(
            super::postgres::PgStore::open(url, *connections, ca_file.as_deref())?
                .with_lease(*lease),
        )),
        #[cfg(not(feature = "postgres"))]
        StoreConfig::Postgres { .. } => Err(crate::error::Error::Validation(
            "this Guichet was built without the `postgres` feature".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_logged_store_configuration_holds_no_password() {
        let c = StoreConfig::Postgres {
            url: "postgres://guichet:s3cr@t@db.example:5432/guichet?sslmode=require".into(),
            connections: 4,
            lease: std::time::Duration::from_secs(60),
            ca_file: None,
        };
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cr"), "{shown}");
        assert!(
            shown.contains("postgres://guichet:***@db.example:5432/guichet?sslmode=require"),
            "{shown}"
        );
        assert_eq!(
            without_password("postgres://guichet@db/guichet"),
            "postgres://guichet@db/guichet"
        );
        assert_eq!(
            without_password("host=db user=x password=y"),
            "host=db user=x password=***"
        );
    }
}
