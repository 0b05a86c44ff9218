//! Connection settings the way libpq users expect them: `--url`, else
//! `DATABASE_URL`, else the `PG*` variables.

use std::time::Duration;

use pglock::tls::{RootCerts, SslMode, TlsOptions};
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config};

/// Where to connect, with which TLS, and where the settings came from.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) config: Config,
    pub(crate) tls: TlsOptions,
    pub(crate) from: &'static str,
}

/// The connection settings: `url` (from `--url`), else `DATABASE_URL`, else the
/// `PG*` variables alone. As with libpq, the variables also fill in what a URL
/// leaves out: `PGHOST` (default `localhost`), `PGPORT` (5432), `PGUSER` (the
/// login name), `PGPASSWORD`, `PGDATABASE` (the user name), `PGAPPNAME`
/// (`pglock`), `PGSSLMODE` (`prefer`) and `PGSSLROOTCERT`. `sslmode` has libpq's
/// meaning, up to `verify-full` (pglock's `tls` feature).
pub(crate) fn settings(url: Option<&str>) -> Result<Settings, String> {
    let parse = |url: &str, from: &str| {
        TlsOptions::from_conninfo(url)
            .map_err(|e| format!("{from} is not a valid connection string: {e}"))
    };
    let (mut config, mut tls, from, explicit_mode) = if let Some(url) = url {
        let (config, tls) = parse(url, "--url")?;
        (config, tls, "--url", url.contains("sslmode"))
    } else if let Some(url) = env("DATABASE_URL") {
        let (config, tls) = parse(&url, "DATABASE_URL")?;
        (config, tls, "DATABASE_URL", url.contains("sslmode"))
    } else {
        (
            Config::new(),
            TlsOptions::default(),
            "the PG* variables",
            false,
        )
    };
    if !explicit_mode {
        if let Some(mode) = env("PGSSLMODE") {
            let mode: SslMode = mode.parse().map_err(|e| format!("PGSSLMODE: {e}"))?;
            let roots = tls.roots().cloned();
            tls = TlsOptions::new(mode);
            if let Some(roots) = roots {
                tls = tls.root_certs(roots);
            }
        }
    }
    if tls.roots().is_none() {
        if let Some(root) = env("PGSSLROOTCERT") {
            tls = tls.root_certs(if root == "system" {
                RootCerts::System
            } else {
                RootCerts::File(root.into())
            });
        }
    }
    if config.get_hosts().is_empty() {
        let hosts = env("PGHOST").unwrap_or_else(|| "localhost".to_string());
        for host in hosts.split(',') {
            config.host(host.trim());
        }
    }
    if config.get_ports().is_empty() {
        if let Some(ports) = env("PGPORT") {
            for port in ports.split(',') {
                let port = port
                    .trim()
                    .parse::<u16>()
                    .map_err(|_| format!("PGPORT={ports:?} is not a port number"))?;
                config.port(port);
            }
        }
    }
    if config.get_user().is_none() {
        let user = env("PGUSER")
            .or_else(|| env("USER"))
            .or_else(|| env("LOGNAME"))
            .unwrap_or_else(|| "postgres".to_string());
        config.user(user);
    }
    if config.get_dbname().is_none() {
        let user = config.get_user().unwrap_or("postgres").to_string();
        config.dbname(env("PGDATABASE").unwrap_or(user));
    }
    if config.get_password().is_none() {
        if let Some(password) = env("PGPASSWORD") {
            config.password(password);
        }
    }
    if config.get_application_name().is_none() {
        config.application_name(env("PGAPPNAME").unwrap_or_else(|| "pglock".to_string()));
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    pglock::configure_keepalives(&mut config);
    Ok(Settings { config, tls, from })
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Settings {
    /// Connects, driving the connection on a spawned task. The error names what
    /// was tried (hosts, ports, user, database, where they came from), never the
    /// password.
    pub(crate) async fn connect(&self) -> Result<Client, String> {
        match self.tls.connect(&self.config).await {
            Ok(client) => Ok(client),
            Err(e) => Err(format!(
                "could not connect to {}: {}",
                self.describe(),
                with_causes(&e)
            )),
        }
    }

    /// A pool of at most `max_size` connections, with one connection made (and
    /// kept) now, so that a server that does not answer is reported here, with
    /// what was tried.
    pub(crate) async fn pool(
        &self,
        max_size: usize,
    ) -> Result<pglock::deadpool_postgres::Pool, String> {
        let pool = pglock::pool_with_tls(self.config.clone(), &self.tls, max_size)
            .map_err(|e| format!("{}: {}", self.describe(), with_causes(&e)))?;
        match pool.get().await {
            Ok(connection) => drop(connection),
            Err(e) => {
                return Err(format!(
                    "could not connect to {}: {}",
                    self.describe(),
                    with_causes(&e)
                ))
            }
        }
        Ok(pool)
    }

    /// `host:port` list, user and database, and their source.
    pub(crate) fn describe(&self) -> String {
        let ports = self.config.get_ports();
        let hosts: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, host)| {
                let port = ports
                    .get(i)
                    .or_else(|| ports.first())
                    .copied()
                    .unwrap_or(5432);
                match host {
                    Host::Tcp(name) => format!("{name}:{port}"),
                    Host::Unix(path) => format!("{}/.s.PGSQL.{port}", path.display()),
                }
            })
            .collect();
        format!(
            "{} as user {:?}, database {:?} (sslmode {}, settings from {})",
            if hosts.is_empty() {
                "localhost:5432".to_string()
            } else {
                hosts.join(", ")
            },
            self.config.get_user().unwrap_or("?"),
            self.config.get_dbname().unwrap_or("?"),
            self.tls.mode(),
            self.from
        )
    }
}

/// An error and its causes, `a: b: c` (tokio-postgres keeps the reason, such as
/// "Connection refused", in the source).
pub(crate) fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = cause.source();
    }
    text
}

/// Connects as `settings(url)` says; the error is printed for the person at the
/// terminal, and the caller exits with the database-error status.
pub(crate) async fn connect(url: Option<&str>) -> Option<Client> {
    let connected = match settings(url) {
        Ok(settings) => settings.connect().await,
        Err(e) => Err(e),
    };
    connected.map_err(|e| eprintln!("pglock: {e}")).ok()
}
