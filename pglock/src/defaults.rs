//! The process-wide default pool that `#[pglock::advisory]` uses when no
//! `pool = …` argument is given.

use std::sync::OnceLock;

use deadpool_postgres::Pool;

use crate::error::Error;

static DEFAULT_POOL: OnceLock<Pool> = OnceLock::new();

/// Installs the pool that `#[pglock::advisory]` functions without a `pool = …`
/// argument lock through. Call it once at start-up.
///
/// Without it, such a function never runs: a `Result` function returns a
/// [misuse](Error::is_misuse) error, and a `side_effect = Skip` function returning
/// `()` or `Option<T>` panics — a missing source is a programming error, never
/// reported as a busy lock.
///
/// # Errors
/// [`is_misuse`](Error::is_misuse) if a default pool is already installed.
pub fn set_default_pool(pool: Pool) -> Result<(), Error> {
    DEFAULT_POOL
        .set(pool)
        .map_err(|_| Error::misuse("a default pool is already installed; set it once at start-up"))
}

/// The pool installed by [`set_default_pool`], if any.
pub fn default_pool() -> Option<&'static Pool> {
    DEFAULT_POOL.get()
}

/// The default pool, or the misuse error that explains how to install one.
#[doc(hidden)]
pub fn require_default_pool() -> Result<&'static Pool, Error> {
    default_pool().ok_or_else(|| {
        Error::misuse(
            "no default pool installed: call pglock::set_default_pool(pool) at start-up, \
             or give the attribute a `pool = …` argument",
        )
    })
}
