//! [`Session`]: one PostgreSQL connection owned by pglock and shared by clones.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::AbortHandle;
use tokio_postgres::{Client, Statement};

use super::contact::Contact;
use super::ledger::Ledger;
use super::Exec;
use crate::error::Error;
use crate::keepalive::Keepalive;
use crate::key::{LockId, Mode};
use crate::sql;

/// A connection's I/O, driven on a task of the session's own.
pub(crate) type Driver =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send>>;

/// How long a session retries an unlock that failed (an aborted transaction left
/// open on it) before it closes its connection, when it drives that connection.
const OWED_UNLOCK_GRACE: Duration = Duration::from_secs(5);
const OWED_UNLOCK_RETRY: Duration = Duration::from_millis(50);

/// One PostgreSQL connection, shared by cheap clones, that guards can hold on to.
///
/// Use a `Session` when you lock through a single connection rather than a pool.
/// It owns the `tokio_postgres::Client` so that every guard can keep the connection
/// alive until its lock is released, which is what makes release-on-drop a
/// guarantee: the guard holds a clone, and dropping it queues the unlock on the
/// connection before the drop returns.
///
/// Guards on one session exclude each other as guards on different connections
/// do: PostgreSQL itself would stack a second hold of the same session (both
/// "granted"), so the session keeps a ledger of its holds and a second exclusive
/// guard on a name waits, in the process, until the first is released (shared
/// guards share). A task that asks for a lock it already holds exclusively
/// through the same session, and waits without a timeout, gets a
/// [deadlock](Error::is_deadlock) error at once instead of waiting for itself
/// forever.
///
/// Settings belong to the server session, not to a guard: per-guard
/// [`lease`](crate::Advisory::lease) and [`label`](crate::Advisory::label) are
/// refused on a shared session (a [misuse](Error::is_misuse) error), since one
/// guard's release would change what another relies on: take leased or labelled
/// locks through a pool.
///
/// If an unlock cannot run — you left the connection in an aborted transaction,
/// say — the release reports the error and the session retries the unlock until it
/// goes through (that is, once the transaction ends). A session made by
/// [`connect`](Session::connect) drives its own connection and closes it, freeing
/// every lock of the session, when the unlock still fails after 5 s.
///
/// Statements are prepared once per session and cached.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

struct Inner {
    client: Owned,
    /// Prepared statements by the address of their (static) text: a lookup
    /// compares a pointer instead of hashing the text.
    statements: Mutex<Vec<(usize, Statement)>>,
    ledger: Arc<Ledger>,
    /// The task driving the connection, when the session spawned it.
    driver: Option<AbortHandle>,
    /// The keepalive settings the connection was made with, when pglock made it.
    keepalive: Option<Keepalive>,
    /// The last confirmed contact with the server, shared by the session's guards.
    contact: Arc<Contact>,
    /// A time-to-live of the whole connection (a `Locker`'s leased connections):
    /// the server ends it after that much silence.
    lease: Mutex<Option<Duration>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last handle is gone: end the connection (and so its session's
        // locks) now rather than when the driver notices the client went away.
        if let Some(driver) = &self.driver {
            driver.abort();
        }
    }
}

/// The connection a session owns: connected by the user or taken out of a pool.
enum Owned {
    Plain(Client),
    Detached(deadpool_postgres::ClientWrapper),
}

impl Session {
    /// Wraps a client you connected yourself. Keep its connection task running.
    pub fn new(client: Client) -> Session {
        Session::with(Owned::Plain(client), None, None)
    }

    /// Takes a connection out of its pool for good: it is closed, not returned,
    /// when the last clone of the session is dropped. pglock does this for
    /// automatically renewed leases, whose renewing task shares the connection.
    pub fn from_pooled(object: deadpool_postgres::Object) -> Session {
        Session::with(
            Owned::Detached(deadpool_postgres::Object::take(object)),
            None,
            None,
        )
    }

    fn with(client: Owned, driver: Option<AbortHandle>, keepalive: Option<Keepalive>) -> Session {
        Session {
            inner: Arc::new(Inner {
                client,
                statements: Mutex::new(Vec::new()),
                ledger: Arc::default(),
                driver,
                keepalive,
                contact: Arc::new(Contact::new(Instant::now())),
                lease: Mutex::new(None),
            }),
        }
    }

    /// Connects without TLS (for example `postgres://user@host/db` or
    /// `host=localhost user=postgres`) and drives the connection on a spawned task.
    ///
    /// The connection gets pglock's dead-peer settings
    /// ([`configure_keepalives`](crate::configure_keepalives)), which replace any
    /// keepalive settings in the configuration string; knowing them, the session's
    /// guards get a local deadline (see the crate docs, "Partitions").
    ///
    /// # Cancel safety
    /// Cancel-safe: dropping the future drops the half-made connection.
    pub async fn connect(config: &str) -> Result<Session, Error> {
        Session::connect_with(config, Keepalive::default()).await
    }

    /// [`connect`](Session::connect) with keepalive settings of your own; the
    /// session's guards count on them for their local deadline.
    ///
    /// # Cancel safety
    /// Cancel-safe: dropping the future drops the half-made connection.
    pub async fn connect_with(config: &str, keepalive: Keepalive) -> Result<Session, Error> {
        let mut config: tokio_postgres::Config = config
            .parse()
            .map_err(|e| Error::invalid_argument(format!("invalid connection string: {e}")))?;
        keepalive.configure_client(&mut config);
        Session::establish(config, keepalive, |config| async move {
            let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
            Ok((client, Box::pin(connection) as Driver))
        })
        .await
    }

    /// Connects with `connect`, drives the connection on a spawned task (so that
    /// the session can close it), sets the server side's keepalives — with `SET`
    /// once connected rather than as startup `options`, which proxies such as
    /// PgBouncer refuse — and checks for a transaction pooler.
    pub(crate) async fn establish<C, F>(
        config: tokio_postgres::Config,
        keepalive: Keepalive,
        connect: C,
    ) -> Result<Session, Error>
    where
        C: Fn(tokio_postgres::Config) -> F,
        F: std::future::Future<Output = Result<(Client, Driver), Error>>,
    {
        let (client, connection) = connect(config.clone()).await?;
        let driver = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %crate::error::describe(&e), "pglock: session connection ended with an error");
            }
        });
        client.batch_execute(&keepalive.server_sql()).await?;
        let session = Session::with(
            Owned::Plain(client),
            Some(driver.abort_handle()),
            Some(keepalive),
        );
        // A second, short-lived connection for the check.
        if let Ok((other, connection)) = connect(config).await {
            let driver = tokio::spawn(connection);
            session.probe(&other).await;
            drop(other);
            let _ = driver.await;
        }
        Ok(session)
    }

    /// Finds out whether a transaction-pooling proxy serves this session: a
    /// second connection (`other`) asks which server session serves it right
    /// after this one's statement. Directly or through session pooling they are
    /// two sessions; through transaction pooling the second gets the server
    /// session the first just gave back. Session locks are then refused.
    async fn probe(&self, other: &Client) {
        let Some(first) = super::source::backend_pid(self.client()).await else {
            return;
        };
        if let Some(second) = super::source::backend_pid(other).await {
            self.ledger().set_pooling(match first == second {
                true => super::ledger::Pooling::Transaction,
                false => super::ledger::Pooling::SessionKept,
            });
        }
    }

    /// The client, for your own queries on the same connection.
    pub fn client(&self) -> &Client {
        match &self.inner.client {
            Owned::Plain(client) => client,
            Owned::Detached(wrapper) => wrapper,
        }
    }

    /// Whether the connection is closed (every lock of this session is then gone).
    pub fn is_closed(&self) -> bool {
        self.client().is_closed()
    }

    pub(crate) fn ledger(&self) -> &Arc<Ledger> {
        &self.inner.ledger
    }

    /// The keepalive settings of the connection, when pglock made it.
    pub(crate) fn keepalive(&self) -> Option<Keepalive> {
        self.inner.keepalive
    }

    /// The last confirmed contact on the connection.
    pub(crate) fn contact(&self) -> &Arc<Contact> {
        &self.inner.contact
    }

    /// The connection's own time-to-live, when it has one.
    pub(crate) fn connection_lease(&self) -> Option<Duration> {
        *self.inner.lease.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives the whole connection a time-to-live (`idle_session_timeout`, set
    /// now) and renews it every third of it from a task, each answer confirming
    /// contact; the task ends when `until` is dropped. Used by a `Locker`.
    pub(crate) async fn lease_connection(&self, ttl: Duration) -> Result<AbortHandle, Error> {
        let value = sql::millis(ttl)
            .filter(|_| ttl >= crate::MIN_LEASE)
            .ok_or_else(|| {
                Error::invalid_argument(format!(
                    "a connection lease of {ttl:?} must be between {:?} and 2147483647 ms",
                    crate::MIN_LEASE
                ))
            })?;
        let params: [super::Param<'_>; 1] = [(&value, tokio_postgres::types::Type::TEXT)];
        Exec::Session(self)
            .query(&super::Prepared::Typed(sql::SET_TTL), &params)
            .await
            .map_err(Error::db)?;
        *self.inner.lease.lock().unwrap_or_else(|p| p.into_inner()) = Some(ttl);
        let weak = Arc::downgrade(&self.inner);
        Ok(tokio::spawn(async move {
            loop {
                tokio::time::sleep(ttl / 3).await;
                let Some(inner) = weak.upgrade() else { return };
                let session = Session { inner };
                let params: [super::Param<'_>; 1] = [(&value, tokio_postgres::types::Type::TEXT)];
                let sent = Instant::now();
                match Exec::Session(&session)
                    .query(&super::Prepared::Typed(sql::SET_TTL), &params)
                    .await
                {
                    Ok(_) => session.contact().confirm(sent),
                    Err(_) => return,
                }
            }
        })
        .abort_handle())
    }

    /// Closes the connection if this session drives it ([`connect`](Session::connect)):
    /// the server then ends the session and frees its locks. Answers whether it
    /// could.
    fn close(&self) -> bool {
        match &self.inner.driver {
            Some(driver) => {
                driver.abort();
                true
            }
            None => false,
        }
    }

    /// Takes over an unlock that failed (for example inside a transaction the
    /// caller left aborted): retries it until it goes through, and keeps `keep`
    /// (the ledger's hold, or a whole admission) — so that nobody in the process
    /// takes the key on this session meanwhile — until then. `if_held` retries an
    /// unlock-if-held (after an attempt that may or may not have been granted)
    /// rather than a plain unlock. A session that drives its connection closes it
    /// when the unlock still fails after [`OWED_UNLOCK_GRACE`].
    pub(crate) fn owe_unlock(
        &self,
        id: LockId,
        mode: Mode,
        if_held: bool,
        keep: impl Send + 'static,
    ) {
        let session = self.clone();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        drop(runtime.spawn(async move {
            let started = Instant::now();
            let key = id.lock_key();
            let (classid, objid, objsubid) = key.pg_locks_triple();
            let mut params = key.params();
            let statement = match if_held {
                true => {
                    params.extend(sql::triple_params(&classid, &objid, &objsubid));
                    sql::unlock_if_held(mode, key.is_pair())
                }
                false => sql::unlock(mode, key.is_pair()),
            };
            loop {
                tokio::time::sleep(OWED_UNLOCK_RETRY).await;
                if session.is_closed() {
                    break;
                }
                match Exec::Session(&session).run(statement, &params).await {
                    Ok(_) => {
                        tracing::info!(lock = %id, "pglock: a delayed unlock went through");
                        break;
                    }
                    Err(e) if started.elapsed() >= OWED_UNLOCK_GRACE => {
                        if session.close() {
                            tracing::error!(lock = %id, error = %crate::error::describe(&e), "pglock: the unlock still fails; closing the session's connection to free its locks");
                        } else {
                            tracing::error!(lock = %id, error = %crate::error::describe(&e), "pglock: the unlock still fails and this session's connection is not pglock's to close; retrying");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            continue;
                        }
                        break;
                    }
                    Err(_) => {}
                }
            }
            drop(keep);
        }));
    }

    /// The statement `sql` if it is prepared on this session already.
    pub(crate) fn cached(&self, sql: &'static str) -> Option<Statement> {
        let address = sql.as_ptr() as usize;
        let statements = self
            .inner
            .statements
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        statements
            .iter()
            .find(|(a, _)| *a == address)
            .map(|(_, s)| s.clone())
    }

    pub(crate) async fn prepare_cached(
        &self,
        sql: &'static str,
    ) -> Result<Statement, tokio_postgres::Error> {
        let address = sql.as_ptr() as usize;
        if let Some(statement) = self.cached(sql) {
            return Ok(statement);
        }
        let statements = || {
            self.inner
                .statements
                .lock()
                .unwrap_or_else(|p| p.into_inner())
        };
        let statement = match &self.inner.client {
            // The pool's own statement cache came along with the connection.
            Owned::Detached(wrapper) => wrapper.prepare_cached(sql).await?,
            Owned::Plain(client) => client.prepare(sql).await?,
        };
        let mut statements = statements();
        if !statements.iter().any(|(a, _)| *a == address) {
            statements.push((address, statement.clone()));
        }
        Ok(statement)
    }
}

impl From<Client> for Session {
    fn from(client: Client) -> Self {
        Session::new(client)
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}
