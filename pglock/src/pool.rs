//! A ready pool: [`pool(conninfo, max_size)`](pool()).

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};

use crate::conninfo;
use crate::Error;

/// A `deadpool_postgres` pool of at most `max_size` connections for `conninfo` (a
/// URL or a key=value string), every connection with pglock's dead-peer settings
/// ([`configure_keepalives`](crate::configure_keepalives)).
///
/// TLS follows libpq's `sslmode` and `sslrootcert` in the string
/// (`tls::SslMode`, default `prefer`) when the `tls` feature
/// is on. Without it only `disable`, `allow` and `prefer` are accepted (they then
/// connect without TLS); a mode that needs TLS is an
/// [invalid-argument](Error::is_invalid_argument) error, never a silently plain
/// connection. Nothing connects until the first `pool.get()`; connections are
/// recycled with a quick check (`RecyclingMethod::Fast`). For other pool settings
/// (`wait_timeout` …) build your own pool the same way.
///
/// ```no_run
/// # async fn demo() -> Result<(), pglock::Error> {
/// let pool = pglock::pool("postgres://app@db.internal/app?sslmode=prefer", 8)?;
/// let guard = pglock::advisory("reindex").acquire(&pool).await?;
/// guard.release().await?;
/// # Ok(()) }
/// ```
pub fn pool(conninfo: &str, max_size: usize) -> Result<Pool, Error> {
    let (config, params) = conninfo::parse(conninfo)?;
    #[cfg(feature = "tls")]
    {
        let tls = crate::tls::TlsOptions::from_params(params)?;
        pool_with_tls(config, &tls, max_size)
    }
    #[cfg(not(feature = "tls"))]
    {
        let mut config = config;
        match params.mode.as_deref() {
            None | Some("disable" | "allow" | "prefer") => {}
            Some(mode) => {
                return Err(Error::invalid_argument(format!(
                    "sslmode={mode} needs TLS: enable pglock's `tls` feature"
                )))
            }
        }
        config.ssl_mode(tokio_postgres::config::SslMode::Disable);
        crate::configure_keepalives(&mut config);
        build(
            Manager::from_config(config, tokio_postgres::NoTls, manager_config()),
            max_size,
        )
    }
}

/// Like [`pool()`], from a driver configuration you assembled and
/// [`TlsOptions`](crate::tls::TlsOptions) (feature `tls`). The configuration gets
/// pglock's keepalives and the options' TLS switch.
///
/// ```no_run
/// use pglock::tls::{RootCerts, SslMode, TlsOptions};
/// # fn demo() -> Result<(), pglock::Error> {
/// let mut config = tokio_postgres::Config::new();
/// config.host("db.internal").user("app").dbname("app");
/// let tls = TlsOptions::new(SslMode::VerifyFull).root_certs(RootCerts::System);
/// let pool = pglock::pool_with_tls(config, &tls, 8)?;
/// # Ok(()) }
/// ```
#[cfg(feature = "tls")]
pub fn pool_with_tls(
    mut config: tokio_postgres::Config,
    tls: &crate::tls::TlsOptions,
    max_size: usize,
) -> Result<Pool, Error> {
    crate::configure_keepalives(&mut config);
    tls.apply(&mut config);
    let manager = if tls.mode() == crate::tls::SslMode::Disable {
        Manager::from_config(config, tokio_postgres::NoTls, manager_config())
    } else {
        Manager::from_config(config, tls.connector()?, manager_config())
    };
    build(manager, max_size)
}

fn manager_config() -> ManagerConfig {
    ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    }
}

fn build(manager: Manager, max_size: usize) -> Result<Pool, Error> {
    Pool::builder(manager)
        .max_size(max_size)
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| Error::invalid_argument(format!("cannot build the pool: {e}")))
}
