//! The shared harness for pglock's integration tests.
//!
//! Every test talks to a real PostgreSQL server:
//! 1. `DATABASE_URL`, when set;
//! 2. otherwise [`DEFAULT_URL`] (a local server with trust authentication, or the
//!    `docker compose up -d` one);
//! 3. otherwise a throwaway cluster started from the PostgreSQL binaries on this
//!    machine (`pg_config --bindir`, or `/usr/lib/postgresql/*/bin`);
//! 4. otherwise one panic that names the remedies.
//!
//! Lock state is asserted through a second connection and `pg_locks` with SQL of
//! the harness's own, never through pglock. Advisory locks are database-wide, so
//! every test takes its names from [`unique_name`].

mod children;
pub mod netns;
mod pgbouncer;
mod relay;
mod replica;
mod witness;

pub use children::{child_result, spawn_child};
pub use pgbouncer::{PgBouncer, PoolMode};
pub use relay::Relay;
pub use replica::{in_recovery, Replica};
pub use witness::Witness;

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::OnceCell;
use tokio_postgres::{Client, NoTls};

/// The URL tried when `DATABASE_URL` is unset.
pub const DEFAULT_URL: &str = "postgres://postgres:postgres@localhost:5432/postgres";

static URL: OnceCell<String> = OnceCell::const_new();

/// The URL of the server the tests use (see the crate docs for how it is chosen).
pub async fn database_url() -> String {
    URL.get_or_init(resolve_url).await.clone()
}

async fn resolve_url() -> String {
    if let Ok(url) = std::env::var("DATABASE_URL") {
        if let Err(e) = try_connect(&url).await {
            panic!("DATABASE_URL={url} does not answer: {e}");
        }
        return url;
    }
    if try_connect(DEFAULT_URL).await.is_ok() {
        return DEFAULT_URL.to_string();
    }
    match Cluster::start(&[]) {
        Ok(cluster) => {
            let url = cluster.url();
            // Lives as long as the test process; a watchdog stops it afterwards.
            cluster.stop_when_process_exits();
            std::mem::forget(cluster);
            url
        }
        Err(e) => panic!(
            "no PostgreSQL server for the tests: DATABASE_URL is unset, nothing answers at \
             {DEFAULT_URL}, and no throwaway cluster could be started ({e}). Remedies: start \
             a local server (`pg_ctlcluster 15 main start`), run `docker compose up -d` in \
             the repository, or set DATABASE_URL to a server you can use."
        ),
    }
}

async fn try_connect(url: &str) -> Result<(), tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await?;
    let task = tokio::spawn(conn);
    client.simple_query("SELECT 1").await?;
    drop(client);
    let _ = task.await;
    Ok(())
}

/// A plain `tokio_postgres` connection, driven on a spawned task.
pub async fn connect() -> Client {
    connect_to(&database_url().await).await
}

/// A plain connection to `url`, with `application_name` set for listings.
pub async fn connect_to(url: &str) -> Client {
    let mut config: tokio_postgres::Config = url.parse().expect("valid URL");
    config.application_name("pglock-tests");
    let (client, conn) = config.connect(NoTls).await.expect("connect");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// A deadpool pool of `max_size` connections to the test server.
pub async fn pool(max_size: usize) -> deadpool_postgres::Pool {
    pool_for(&database_url().await, max_size)
}

/// A deadpool pool for `url`.
pub fn pool_for(url: &str, max_size: usize) -> deadpool_postgres::Pool {
    let mut pg: tokio_postgres::Config = url.parse().expect("valid URL");
    pg.application_name("pglock-tests");
    let manager = deadpool_postgres::Manager::from_config(
        pg,
        NoTls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    deadpool_postgres::Pool::builder(manager)
        .max_size(max_size)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(10)))
        .create_timeout(Some(Duration::from_secs(10)))
        .build()
        .expect("pool")
}

/// A pglock session on the test server.
pub async fn session() -> pglock::Session {
    pglock::Session::new(connect().await)
}

/// A lock name no other test (or test run) uses.
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "pglock-test:{prefix}:{}:{}:{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

// TLS test certificates and the django-pglock peer.
mod certs;
mod python;

pub use certs::TlsCerts;
pub use python::{django_pglock_peer, DJANGO_PGLOCK_PACKAGES, DJANGO_PGLOCK_PEER};

/// One row of `pg_locks` for an advisory key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockRow {
    /// Backend pid.
    pub pid: i32,
    /// `ExclusiveLock` or `ShareLock`.
    pub mode: String,
    /// Held (`true`) or waited for.
    pub granted: bool,
}

impl LockRow {
    fn from_row(row: &tokio_postgres::Row) -> LockRow {
        LockRow {
            pid: row.get(0),
            mode: row.get(1),
            granted: row.get(2),
        }
    }
}

/// Every `pg_locks` row for the bigint advisory `key` in the current database, seen
/// from `observer`. The key is split into `classid`/`objid` here in SQL, on purpose
/// independently of pglock's own split.
pub async fn bigint_lock_rows(observer: &Client, key: i64) -> Vec<LockRow> {
    observer
        .query(
            "SELECT pid, mode, granted FROM pg_locks WHERE locktype = 'advisory' \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             AND objsubid = 1 \
             AND classid::int8 = (($1::int8 >> 32) & 4294967295) \
             AND objid::int8 = ($1::int8 & 4294967295) ORDER BY granted DESC, pid",
            &[&key],
        )
        .await
        .expect("query pg_locks")
        .iter()
        .map(LockRow::from_row)
        .collect()
}

/// `pg_locks` rows for the lock called `name` (hashed as pglock's contract says).
pub async fn lock_rows(observer: &Client, name: &str) -> Vec<LockRow> {
    bigint_lock_rows(observer, pglock::key_for(name).expect("valid name")).await
}

/// Rows for a two-integer key (`objsubid` 2).
pub async fn pair_lock_rows(observer: &Client, a: i32, b: i32) -> Vec<LockRow> {
    observer
        .query(
            "SELECT pid, mode, granted FROM pg_locks WHERE locktype = 'advisory' \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             AND objsubid = 2 AND classid::int8 = ($1::int4::int8 & 4294967295) \
             AND objid::int8 = ($2::int4::int8 & 4294967295) ORDER BY granted DESC, pid",
            &[&a, &b],
        )
        .await
        .expect("query pg_locks")
        .iter()
        .map(LockRow::from_row)
        .collect()
}

/// Pids holding `name` (granted rows).
pub async fn holders(observer: &Client, name: &str) -> Vec<i32> {
    lock_rows(observer, name)
        .await
        .into_iter()
        .filter(|r| r.granted)
        .map(|r| r.pid)
        .collect()
}

/// Every advisory lock (any key) held or awaited by the session `pid`.
pub async fn advisory_locks_of(observer: &Client, pid: i32) -> i64 {
    observer
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = $1",
            &[&pid],
        )
        .await
        .expect("count locks")
        .get(0)
}

/// Every advisory lock in the server's lock table, held or awaited, by anyone
/// (for throwaway servers, where nothing else runs).
pub async fn advisory_lock_count(observer: &Client) -> i64 {
    observer
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'",
            &[],
        )
        .await
        .expect("count advisory locks")
        .get(0)
}

/// The backend pid of `client`.
pub async fn pid_of(client: &Client) -> i32 {
    client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0)
}

/// Waits until `check` is true, polling every 10 ms, for at most `limit`.
/// Returns whether it became true. (Used to observe asynchronous effects such as a
/// dropped guard's unlock, never to assert speed.)
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `pid` is waiting (ungranted) on `name`.
pub async fn wait_until_waiting(observer: &Client, name: &str, pid: Option<i32>) {
    let seen = eventually(Duration::from_secs(10), || async {
        lock_rows(observer, name)
            .await
            .iter()
            .any(|r| !r.granted && pid.is_none_or(|p| p == r.pid))
    })
    .await;
    assert!(seen, "nobody started waiting for {name}");
}

/// A throwaway PostgreSQL cluster for tests that need their own server: tiny
/// settings, restarts, terminations. Stopped when dropped.
pub struct Cluster {
    dir: PathBuf,
    bindir: PathBuf,
    port: u16,
}

impl Cluster {
    /// Creates and starts a cluster with extra `postgresql.conf` settings such as
    /// `("max_locks_per_transaction", "10")`.
    pub fn start(settings: &[(&str, &str)]) -> Result<Cluster, String> {
        Cluster::start_with_hba(settings, &[])
    }

    /// Like [`start`](Cluster::start), with extra `pg_hba.conf` lines (for clients
    /// connecting from other addresses, e.g. a network namespace).
    pub fn start_with_hba(settings: &[(&str, &str)], hba: &[&str]) -> Result<Cluster, String> {
        let bindir =
            pg_bindir().ok_or("no PostgreSQL server binaries found (pg_config --bindir)")?;
        let port = free_port()?;
        let dir =
            std::env::temp_dir().join(format!("pglock-cluster-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        if is_root() {
            run(Command::new("chown").arg("postgres:postgres").arg(&dir))?;
        }
        let data = dir.join("data");
        run(as_server_user(
            Command::new(bindir.join("initdb"))
                .arg("-D")
                .arg(&data)
                .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"]),
        )?)?;
        let mut conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             fsync = off\nmax_connections = 40\n",
            dir.display()
        );
        for (k, v) in settings {
            conf.push_str(&format!("{k} = '{v}'\n"));
        }
        let conf_path = data.join("postgresql.auto.conf");
        let mut existing = std::fs::read_to_string(&conf_path).unwrap_or_default();
        existing.push_str(&conf);
        // Written as root when root; initdb's files stay the server user's.
        std::fs::write(&conf_path, existing).map_err(|e| e.to_string())?;
        if !hba.is_empty() {
            let hba_path = data.join("pg_hba.conf");
            let mut rules = std::fs::read_to_string(&hba_path).map_err(|e| e.to_string())?;
            for line in hba {
                rules.push_str(line);
                rules.push('\n');
            }
            std::fs::write(&hba_path, rules).map_err(|e| e.to_string())?;
        }
        let cluster = Cluster { dir, bindir, port };
        cluster.pg_ctl(&["start", "-w", "-t", "60"])?;
        Ok(cluster)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server (fast shutdown: sessions are terminated).
    pub fn stop(&self) -> Result<(), String> {
        self.pg_ctl(&["stop", "-m", "fast", "-w"])
    }

    /// Restarts the server: every session and every advisory lock is lost.
    pub fn restart(&self) -> Result<(), String> {
        self.pg_ctl(&["restart", "-m", "fast", "-w", "-t", "60"])
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<(), String> {
        let data = self.dir.join("data");
        let log = self.dir.join("server.log");
        let mut cmd = Command::new(self.bindir.join("pg_ctl"));
        cmd.arg("-D").arg(&data).arg("-l").arg(&log).args(args);
        run(as_server_user(&mut cmd)?)
    }

    fn stop_when_process_exits(&self) {
        let script = format!(
            "while [ -d /proc/{} ]; do sleep 1; done; {} -D {} stop -m immediate; rm -rf {}",
            std::process::id(),
            self.bindir.join("pg_ctl").display(),
            self.dir.join("data").display(),
            self.dir.display()
        );
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &script]);
        if let Ok(cmd) = as_server_user(&mut cmd) {
            let _ = cmd.stdin(std::process::Stdio::null()).spawn();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["stop", "-m", "immediate", "-w"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn pg_bindir() -> Option<PathBuf> {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return Some(dir);
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    found.pop()
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// PostgreSQL refuses to run as root: run server commands as `postgres` then.
fn as_server_user(cmd: &mut Command) -> Result<&mut Command, String> {
    if !is_root() {
        return Ok(cmd);
    }
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let mut wrapped = Command::new("runuser");
    wrapped
        .args(["-u", "postgres", "--"])
        .arg(program)
        .args(args);
    *cmd = wrapped;
    Ok(cmd)
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{:?}: {e}", cmd.get_program()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{:?} failed: {}{}",
            cmd.get_program(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The setup most lock tests share: an observer connection (for `pg_locks`) and a
/// lock name of the test's own.
pub struct Fixture {
    /// A plain connection that is never used to lock: asserts go through it.
    pub observer: Client,
    /// A unique lock name.
    pub name: String,
}

impl Fixture {
    /// An observer and a unique name starting with `prefix`.
    pub async fn new(prefix: &str) -> Fixture {
        Fixture {
            observer: connect().await,
            name: unique_name(prefix),
        }
    }

    /// The `pg_locks` rows of the fixture's lock.
    pub async fn rows(&self) -> Vec<LockRow> {
        lock_rows(&self.observer, &self.name).await
    }

    /// The pids holding the fixture's lock.
    pub async fn holders(&self) -> Vec<i32> {
        holders(&self.observer, &self.name).await
    }

    /// Waits (at most 5 s) until nobody holds or waits for the lock; answers
    /// whether that happened.
    pub async fn until_free(&self) -> bool {
        eventually(Duration::from_secs(5), || async {
            self.rows().await.is_empty()
        })
        .await
    }

    /// A separate plain connection that holds the lock until the returned client
    /// is dropped or unlocks it (`SELECT pg_advisory_unlock_all()`).
    pub async fn hold_elsewhere(&self) -> Client {
        let other = connect().await;
        let key = pglock::key_for(&self.name).expect("valid name");
        other
            .execute("SELECT pg_advisory_lock($1)", &[&key])
            .await
            .expect("lock from another session");
        other
    }
}
