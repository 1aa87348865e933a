//! A pooled connection that keeps its prepared statements: every statement Guichet sends
//! is one of a fixed set, parsed and planned by PostgreSQL once per connection instead of
//! at every call (without this the database spent most of its CPU parsing).

use std::collections::HashMap;

use postgres::types::ToSql;
use postgres::{GenericClient, Row, Statement};
use r2d2_postgres::PostgresConnectionManager;
use tokio_postgres_rustls::MakeRustlsConnect;

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];
type Statements = HashMap<&'static str, Statement>;

/// The pool's manager: `r2d2_postgres`'s, with a statement cache per connection.
pub(super) struct Manager {
    inner: PostgresConnectionManager<MakeRustlsConnect>,
    /// When a connection was last found broken: the database may have cut all of them (a
    /// restart, a failover), so every connection given back before then is checked
    /// before it is used again, however fresh.
    broken_seen: parking_lot::Mutex<Option<std::time::Instant>>,
}

impl Manager {
    pub(super) fn new(inner: PostgresConnectionManager<MakeRustlsConnect>) -> Manager {
        Manager {
            inner,
            broken_seen: parking_lot::Mutex::new(None),
        }
    }
}

pub(super) struct Connection {
    client: postgres::Client,
    statements: Statements,
    /// When it was last given back to the pool.
    returned: std::time::Instant,
}

/// A connection given back to the pool less than this long ago is taken again without a
/// check: under load every connection is, and the check is a round trip (as much as the
/// query it precedes). One idle longer is checked first (the database may have been
/// restarted, or a failover cut it meanwhile).
const FRESH: std::time::Duration = std::time::Duration::from_secs(1);

impl r2d2::ManageConnection for Manager {
    type Connection = Connection;
    type Error = postgres::Error;

    fn connect(&self) -> Result<Connection, postgres::Error> {
        Ok(Connection {
            client: self.inner.connect()?,
            statements: HashMap::new(),
            returned: std::time::Instant::now(),
        })
    }

    fn is_valid(&self, c: &mut Connection) -> Result<(), postgres::Error> {
        let suspect = self
            .broken_seen
            .lock()
            .is_some_and(|seen| seen >= c.returned);
        if c.returned.elapsed() < FRESH && !suspect {
            return Ok(());
        }
        self.inner.is_valid(&mut c.client)?;
        c.returned = std::time::Instant::now();
        Ok(())
    }

    fn has_broken(&self, c: &mut Connection) -> bool {
        c.returned = std::time::Instant::now();
        let broken = self.inner.has_broken(&mut c.client);
        if broken {
            *self.broken_seen.lock() = Some(c.returned);
        }
        broken
    }
}

fn prepared(
    client: &mut impl GenericClient,
    statements: &mut Statements,
    sql: &'static str,
) -> Result<Statement, postgres::Error> {
    if let Some(s) = statements.get(sql) {
        return Ok(s.clone());
    }
    let s = client.prepare(sql)?;
    statements.insert(sql, s.clone());
    Ok(s)
}

impl Connection {
    fn parts(&mut self) -> (&mut postgres::Client, &mut Statements) {
        (&mut self.client, &mut self.statements)
    }

    pub(super) fn query(
        &mut self,
        sql: &'static str,
        params: Params<'_>,
    ) -> Result<Vec<Row>, postgres::Error> {
        let (c, st) = self.parts();
        let s = prepared(c, st, sql)?;
        c.query(&s, params)
    }

    pub(super) fn query_one(
        &mut self,
        sql: &'static str,
        params: Params<'_>,
    ) -> Result<Row, postgres::Error> {
        let (c, st) = self.parts();
        let s = prepared(c, st, sql)?;
        c.query_one(&s, params)
    }

    pub(super) fn query_opt(
        &mut self,
        sql: &'static str,
        params: Params<'_>,
    ) -> Result<Option<Row>, postgres::Error> {
        let (c, st) = self.parts();
        let s = prepared(c, st, sql)?;
        c.query_opt(&s, params)
    }

    pub(super) fn execute(
        &mut self,
        sql: &'static str,
        params: Params<'_>,
    ) -> Result<u64, postgres::Error> {
        let (c, st) = self.parts();
        let s = prepared(c, st, sql)?;
        c.execute(&s, params)
    }

    pub(super) fn transaction(&mut self) -> Result<Tx<'_>, postgres::Error> {
        let (c, statements) = self.parts();
        Ok(Tx {
            tx: c.transaction()?,
            statements,
        })
    }
}

/// A transaction on a [`Connection`], with its statements.
pub(super) struct Tx<'a> {
    tx: postgres::Transaction<'a>,
    statements: &'a mut Statements,
}

impl Tx<'_> {
    pub(super) fn query(
        &mut self,
        sql: &'static str,
        params: Params<'_>,
    ) -> Result<Vec<Row>, postgres::Error> {
        let s = prepared(&mut self.tx, self.statements, sql)?;
        self.tx.query(&s, params)
    }

    pub(super) fn query_one(
        &mut self,
        sql: &'static str,
        params: Params<'_>,
    ) -> Result<Row, postgres::Error> {
        let s = prepared(&mut self.tx, self.statements, sql)?;
        self.tx.query_one(&s, params)
    }

    pub(super) fn query_opt(
        &mut self,
        sql: &'static str,
        params: Params<'_>,
    ) -> Result<Option<Row>, postgres::Error> {
        let s = prepared(&mut self.tx, self.statements, sql)?;
        self.tx.query_opt(&s, params)
    }

    pub(super) fn execute(
        &mut self,
        sql: &'static str,
        params: Params<'_>,
    ) -> Result<u64, postgres::Error> {
        let s = prepared(&mut self.tx, self.statements, sql)?;
        self.tx.execute(&s, params)
    }

    /// Several statements at once, unprepared (the schema's migrations).
    pub(super) fn batch_execute(&mut self, sql: &str) -> Result<(), postgres::Error> {
        self.tx.batch_execute(sql)
    }

    pub(super) fn commit(self) -> Result<(), postgres::Error> {
        self.tx.commit()
    }
}
