//! The process-wide default source that `#[pglock::advisory]` uses when no
//! `pool = …` argument is given: a pool or a [`Locker`].

use std::sync::{Arc, OnceLock};

use deadpool_postgres::Pool;

use crate::conn::ledger::Ledger;
use crate::conn::source::private::Sealed;
use crate::conn::{Conn, Locker, Source};
use crate::error::Error;
use crate::keepalive::Keepalive;
use crate::key::LockKey;

static DEFAULT: OnceLock<DefaultSource> = OnceLock::new();

/// The default source: what [`set_default_pool`] or [`set_default_locker`]
/// installed. Not public API.
#[doc(hidden)]
pub enum DefaultSource {
    Pool(Pool),
    Locker(Locker),
}

fn install(source: DefaultSource) -> Result<(), Error> {
    DEFAULT.set(source).map_err(|_| {
        Error::misuse("a default source is already installed; set it once at start-up")
    })
}

/// Installs the pool that `#[pglock::advisory]` functions without a `pool = …`
/// argument lock through. Call it once at start-up.
///
/// Without a default source, such a function never runs: a `Result` function
/// returns a [misuse](Error::is_misuse) error, and a `side_effect = Skip` function
/// returning `()` or `Option<T>` panics — a missing source is a programming
/// error, never reported as a busy lock.
///
/// # Errors
/// [`is_misuse`](Error::is_misuse) if a default source is already installed.
pub fn set_default_pool(pool: Pool) -> Result<(), Error> {
    install(DefaultSource::Pool(pool))
}

/// Installs a [`Locker`] as the default source of `#[pglock::advisory]`
/// functions without a `pool = …` argument, instead of a pool: their locks then
/// share the locker's few connections. Call it once at start-up.
///
/// # Errors
/// [`is_misuse`](Error::is_misuse) if a default source is already installed.
pub fn set_default_locker(locker: Locker) -> Result<(), Error> {
    install(DefaultSource::Locker(locker))
}

/// The pool installed by [`set_default_pool`], if any.
pub fn default_pool() -> Option<&'static Pool> {
    match DEFAULT.get()? {
        DefaultSource::Pool(pool) => Some(pool),
        DefaultSource::Locker(_) => None,
    }
}

/// The default source, or the misuse error that explains how to install one.
#[doc(hidden)]
pub fn require_default_pool() -> Result<&'static DefaultSource, Error> {
    DEFAULT.get().ok_or_else(|| {
        Error::misuse(
            "no default source installed: call pglock::set_default_pool(pool) (or \
             set_default_locker) at start-up, or give the attribute a `pool = …` argument",
        )
    })
}

impl Sealed for DefaultSource {
    async fn checkout(&self) -> Result<Conn, Error> {
        match self {
            DefaultSource::Pool(p) => p.checkout().await,
            DefaultSource::Locker(l) => l.checkout().await,
        }
    }

    async fn checkout_for(&self, key: LockKey) -> Result<Conn, Error> {
        match self {
            DefaultSource::Pool(p) => p.checkout_for(key).await,
            DefaultSource::Locker(l) => l.checkout_for(key).await,
        }
    }

    fn ledger(&self) -> Arc<Ledger> {
        match self {
            DefaultSource::Pool(p) => p.ledger(),
            DefaultSource::Locker(l) => l.ledger(),
        }
    }

    fn waiters(&self) -> Option<&Pool> {
        match self {
            DefaultSource::Pool(p) => p.waiters(),
            DefaultSource::Locker(l) => l.waiters(),
        }
    }

    async fn probe(&self, conn: &Conn) {
        match self {
            DefaultSource::Pool(p) => p.probe(conn).await,
            DefaultSource::Locker(l) => l.probe(conn).await,
        }
    }

    fn keepalive(&self) -> Option<Keepalive> {
        match self {
            DefaultSource::Pool(p) => Sealed::keepalive(p),
            DefaultSource::Locker(l) => Sealed::keepalive(l),
        }
    }
}
#[diagnostic::do_not_recommend]
impl Source for DefaultSource {}
