//! Connection settings the way libpq users expect them: `--url`, else
//! `DATABASE_URL`, else the `PG*` variables.

use std::time::Duration;

use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::{Client, Config, NoTls};

/// Where the settings came from, for error messages.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) config: Config,
    pub(crate) from: &'static str,
}

/// The connection settings: `url` (from `--url`), else `DATABASE_URL`, else the
/// `PG*` variables alone. As with libpq, the variables also fill in what a URL
/// leaves out: `PGHOST` (default `localhost`), `PGPORT` (5432), `PGUSER` (the
/// login name), `PGPASSWORD`, `PGDATABASE` (the user name), `PGAPPNAME`
/// (`pglock`). `PGSSLMODE` and `sslmode=` may only ask for no TLS (`disable`,
/// `allow`, `prefer`): this build has none.
pub(crate) fn settings(url: Option<&str>) -> Result<Settings, String> {
    let (mut config, from) = if let Some(url) = url {
        (parse(url, "--url")?, "--url")
    } else if let Some(url) = env("DATABASE_URL") {
        (parse(&url, "DATABASE_URL")?, "DATABASE_URL")
    } else {
        if let Some(mode) = env("PGSSLMODE") {
            match mode.as_str() {
                "disable" | "allow" | "prefer" => {}
                "require" | "verify-ca" | "verify-full" => {
                    return Err(format!(
                        "PGSSLMODE={mode} asks for TLS, which this build of pglock does not \
                         include; use PGSSLMODE=disable or prefer"
                    ))
                }
                other => return Err(format!("PGSSLMODE={other:?} is not an sslmode")),
            }
        }
        (Config::new(), "the PG* variables")
    };
    if config.get_ssl_mode() == SslMode::Require {
        return Err(format!(
            "sslmode=require (in {from}) asks for TLS, which this build of pglock does not \
             include; use sslmode=disable or prefer"
        ));
    }
    config.ssl_mode(SslMode::Disable);
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
    Ok(Settings { config, from })
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn parse(url: &str, from: &str) -> Result<Config, String> {
    url.parse()
        .map_err(|e| format!("{from} is not a valid connection string: {e}"))
}

impl Settings {
    /// Connects, driving the connection on a spawned task. The error names what
    /// was tried (hosts, ports, user, database, where they came from), never the
    /// password.
    pub(crate) async fn connect(&self) -> Result<Client, String> {
        match self.config.connect(NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                Ok(client)
            }
            Err(e) => Err(format!(
                "could not connect to {}: {}",
                self.describe(),
                with_causes(&e)
            )),
        }
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
            "{} as user {:?}, database {:?} (settings from {})",
            if hosts.is_empty() {
                "localhost:5432".to_string()
            } else {
                hosts.join(", ")
            },
            self.config.get_user().unwrap_or("?"),
            self.config.get_dbname().unwrap_or("?"),
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
