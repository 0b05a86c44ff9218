//! A real PgBouncer in front of the test server, on a free loopback port, in
//! session or transaction pooling mode. `.ci/run` installs the Debian package when
//! it is missing; elsewhere [`PgBouncer::start`] answers why it cannot start, and
//! the tests that need it say so and skip.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{as_server_user, database_url, free_port, is_root};

/// How PgBouncer hands out server connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolMode {
    /// A server connection per client connection, for the client's whole session.
    Session,
    /// A server connection per transaction: consecutive transactions of one client
    /// may run on different server sessions.
    Transaction,
}

/// A running PgBouncer, stopped when dropped.
pub struct PgBouncer {
    child: Child,
    dir: PathBuf,
    port: u16,
    /// The test database and user (`DATABASE_URL`'s): advisory locks are
    /// per database, so the proxy must lead to the one the observers watch.
    dbname: String,
    user: String,
}

impl PgBouncer {
    /// Starts PgBouncer in `mode` in front of the test server.
    pub async fn start(mode: PoolMode) -> Result<PgBouncer, String> {
        let binary = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .ok_or("pgbouncer is not installed (Debian package `pgbouncer`)")?;
        let url = database_url().await;
        let config: tokio_postgres::Config = url.parse().map_err(|e| format!("{e}"))?;
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => "127.0.0.1".to_string(),
        };
        let host = if host == "localhost" {
            "127.0.0.1".to_string()
        } else {
            host
        };
        let server_port = config.get_ports().first().copied().unwrap_or(5432);
        let user = config.get_user().unwrap_or("postgres").to_string();
        let password = config
            .get_password()
            .map(|p| format!(" password={}", String::from_utf8_lossy(p)))
            .unwrap_or_default();
        let port = free_port()?;
        let dir =
            std::env::temp_dir().join(format!("pglock-pgbouncer-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let ini = dir.join("pgbouncer.ini");
        let mode_name = match mode {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
        };
        std::fs::write(
            &ini,
            format!(
                "[databases]\n* = host={host} port={server_port} user={user}{password}\n\
                 [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
                 unix_socket_dir =\nauth_type = any\npool_mode = {mode_name}\n\
                 max_client_conn = 200\ndefault_pool_size = 4\n\
                 logfile = {log}\npidfile = {pid}\n",
                log = dir.join("pgbouncer.log").display(),
                pid = dir.join("pgbouncer.pid").display(),
            ),
        )
        .map_err(|e| e.to_string())?;
        if is_root() {
            let _ = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status();
        }
        let mut cmd = Command::new(binary);
        cmd.arg(&ini);
        let child = as_server_user(&mut cmd)?
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("pgbouncer: {e}"))?;
        let dbname = config.get_dbname().unwrap_or("postgres").to_string();
        let bouncer = PgBouncer {
            child,
            dir,
            port,
            dbname,
            user: user.clone(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(bouncer);
            }
            if Instant::now() > deadline {
                let log =
                    std::fs::read_to_string(bouncer.dir.join("pgbouncer.log")).unwrap_or_default();
                return Err(format!("pgbouncer did not start: {log}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A URL that connects through PgBouncer to the test database.
    pub fn url(&self) -> String {
        format!(
            "postgres://{}@127.0.0.1:{}/{}",
            self.user, self.port, self.dbname
        )
    }

    /// Starts PgBouncer, or prints why it cannot and answers `None` (the caller
    /// skips its test).
    pub async fn start_or_skip(mode: PoolMode, test: &str) -> Option<PgBouncer> {
        match PgBouncer::start(mode).await {
            Ok(b) => Some(b),
            Err(e) => {
                eprintln!("SKIPPED {test}: {e}");
                None
            }
        }
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
