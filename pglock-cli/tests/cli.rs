//! The `pglock` binary, run as a real process against the real server: mutual
//! exclusion between two `pglock run`, `-n` and `-w`, exit statuses, signal
//! forwarding, a lost lock ending the command, `key`, `status --json` and
//! `release`. Lock state is checked with the harness's own `pg_locks` SQL.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use pglock_tests::{connect, database_url, eventually, lock_rows, unique_name};
use tokio::process::{Child, Command};
use tokio_postgres::Client;

/// The binary, pointed at the test database, with no stray libpq settings.
async fn pglock() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pglock"));
    cmd.env("DATABASE_URL", database_url().await)
        .env_remove("PGSSLMODE")
        .kill_on_drop(true);
    cmd
}

/// A fresh directory for one test's marker files.
fn scratch(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(unique_name(test).replace(':', "_"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Waits (up to 20 s) for `path` to exist.
async fn wait_for_file(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A shell script that marks `ready`, then runs until `stop` exists.
fn hold_until(ready: &Path, stop: &Path) -> String {
    format!(
        "touch '{}'; while [ ! -e '{}' ]; do sleep 0.05; done",
        ready.display(),
        stop.display()
    )
}

/// Starts `pglock run NAME [extra…] -- sh -c SCRIPT`, stderr captured.
async fn start_run(name: &str, extra: &[&str], script: &str) -> Child {
    pglock()
        .await
        .arg("run")
        .arg(name)
        .args(extra)
        .args(["--", "sh", "-c", script])
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pglock run")
}

/// Runs the binary with `args` to completion and answers its output.
async fn output<S: AsRef<std::ffi::OsStr>>(args: impl IntoIterator<Item = S>) -> Output {
    pglock()
        .await
        .args(args)
        .output()
        .await
        .expect("run pglock")
}

/// A `pglock run` holding a lock of the test's own, whose command runs until
/// [`HeldRun::stop`]: started, and seen holding in `pg_locks`.
struct HeldRun {
    name: String,
    /// A marker file for the test's other commands to create.
    ran: PathBuf,
    stop: PathBuf,
    run: Child,
    /// The backend holding the lock.
    pid: i32,
}

impl HeldRun {
    async fn start(observer: &Client, prefix: &str, extra: &[&str]) -> HeldRun {
        let dir = scratch(prefix);
        let (ready, stop, ran) = (dir.join("ready"), dir.join("stop"), dir.join("ran"));
        let name = unique_name(prefix);
        let run = start_run(&name, extra, &hold_until(&ready, &stop)).await;
        wait_for_file(&ready).await;
        let pid = holder_pid(observer, &name).await;
        HeldRun {
            name,
            ran,
            stop,
            run,
            pid,
        }
    }

    /// Lets the command end, and waits for the run to exit.
    async fn stop(self) -> Output {
        std::fs::write(&self.stop, "").unwrap();
        finish(self.run, Duration::from_secs(10)).await
    }
}

/// `run NAME FLAGS… -- touch MARKER`: arguments for a run whose command leaves
/// `marker` behind.
fn run_args(name: &str, flags: &[&str], marker: &Path) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = vec!["run".into(), name.into()];
    args.extend(flags.iter().map(Into::into));
    args.extend(["--".into(), "touch".into(), marker.into()]);
    args
}

/// Waits for a process, at most `limit`.
async fn finish(child: Child, limit: Duration) -> Output {
    tokio::time::timeout(limit, child.wait_with_output())
        .await
        .expect("pglock exits in time")
        .expect("wait for pglock")
}

/// The pid of the single session holding `name`.
async fn holder_pid(observer: &Client, name: &str) -> i32 {
    let rows = lock_rows(observer, name).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(rows[0].granted);
    rows[0].pid
}

#[tokio::test]
async fn second_run_with_n_is_busy_and_never_runs_its_command() {
    let observer = connect().await;
    let held = HeldRun::start(&observer, "cli-n", &[]).await;
    let (name, ran, pid) = (held.name.clone(), held.ran.clone(), held.pid);

    let busy = output(run_args(&name, &["-n"], &ran)).await;
    assert_eq!(busy.status.code(), Some(1), "{busy:?}");
    let stderr = String::from_utf8_lossy(&busy.stderr);
    assert!(stderr.contains(&format!("pid {pid}")), "{stderr}");

    let custom = output(run_args(&name, &["-n", "-E", "42", "-q"], &ran)).await;
    assert_eq!(custom.status.code(), Some(42), "{custom:?}");
    assert!(custom.stderr.is_empty(), "-q prints nothing");
    assert!(!ran.exists(), "the busy run's command ran");
    // Still exactly the first holder.
    assert_eq!(holder_pid(&observer, &name).await, pid);

    let out = held.stop().await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(lock_rows(&observer, &name).await.is_empty());

    // Free now: the command runs.
    let free = output(run_args(&name, &["-n"], &ran)).await;
    assert_eq!(free.status.code(), Some(0), "{free:?}");
    assert!(ran.exists());
}

#[tokio::test]
async fn wait_gives_up_after_its_time() {
    let observer = connect().await;
    let held = HeldRun::start(&observer, "cli-w", &[]).await;
    let (name, ran, pid) = (held.name.clone(), held.ran.clone(), held.pid);

    let started = Instant::now();
    let waited = output(run_args(&name, &["-w", "0.8", "-E", "75"], &ran)).await;
    let elapsed = started.elapsed();
    assert_eq!(waited.status.code(), Some(75), "{waited:?}");
    assert!(elapsed >= Duration::from_millis(800), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(8), "{elapsed:?}");
    assert!(!ran.exists());

    // A waiter that the holder's exit lets in runs its command.
    let waiter = pglock()
        .await
        .args(run_args(&name, &["-w", "30"], &ran))
        .spawn()
        .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            lock_rows(&observer, &name).await.len() == 2
        })
        .await,
        "the second run never queued"
    );
    assert_eq!(holder_pid_granted(&observer, &name).await, pid);
    std::fs::write(&held.stop, "").unwrap();
    let out = finish(waiter, Duration::from_secs(20)).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(ran.exists());
    held.stop().await;
}

async fn holder_pid_granted(observer: &Client, name: &str) -> i32 {
    let rows = lock_rows(observer, name).await;
    let granted: Vec<_> = rows.iter().filter(|r| r.granted).collect();
    assert_eq!(granted.len(), 1, "{rows:?}");
    granted[0].pid
}

#[tokio::test]
async fn exit_status_passes_through() {
    let name = unique_name("cli-status");
    let code = |script: &'static str| {
        let name = name.clone();
        async move {
            pglock()
                .await
                .args(["run", &name, "--", "sh", "-c", script])
                .status()
                .await
                .unwrap()
                .code()
        }
    };
    assert_eq!(code("exit 0").await, Some(0));
    assert_eq!(code("exit 7").await, Some(7));
    assert_eq!(code("kill -TERM $$").await, Some(128 + 15));
    assert_eq!(code("kill -KILL $$").await, Some(128 + 9));
    let missing = pglock()
        .await
        .args(["run", &name, "--", "/nonexistent/command"])
        .output()
        .await
        .unwrap();
    assert_eq!(missing.status.code(), Some(127), "{missing:?}");
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/command"));
    // The lock is released after each run.
    assert!(lock_rows(&connect().await, &name).await.is_empty());
}

#[tokio::test]
async fn sigterm_and_sigint_are_forwarded_to_the_command() {
    for (signal, number) in [("TERM", 15), ("INT", 2)] {
        let dir = scratch("cli-signal");
        let (ready, got) = (dir.join("ready"), dir.join("got"));
        let name = unique_name("cli-signal");
        let script = format!(
            "trap 'echo {signal} > \"{got}\"; exit 5' {signal}; touch '{ready}'; \
             while true; do sleep 0.05; done",
            got = got.display(),
            ready = ready.display()
        );
        let run = start_run(&name, &[], &script).await;
        wait_for_file(&ready).await;
        let pid = run.id().unwrap();
        let sent = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(sent.success());
        let out = finish(run, Duration::from_secs(10)).await;
        assert_eq!(
            out.status.code(),
            Some(5),
            "SIG{signal} ({number}): {out:?}"
        );
        assert_eq!(
            std::fs::read_to_string(&got).unwrap().trim(),
            signal,
            "the command saw SIG{signal}"
        );
        assert!(lock_rows(&connect().await, &name).await.is_empty());
    }
}

#[tokio::test]
async fn a_lost_lock_ends_the_command() {
    let observer = connect().await;
    let dir = scratch("cli-lost");
    let (ready, termed) = (dir.join("ready"), dir.join("termed"));
    let name = unique_name("cli-lost");
    // The command exits on SIGTERM.
    let script = format!(
        "trap 'touch \"{}\"; exit 0' TERM; touch '{}'; while true; do sleep 0.05; done",
        termed.display(),
        ready.display()
    );
    let run = start_run(&name, &["--grace", "30"], &script).await;
    wait_for_file(&ready).await;
    let backend = holder_pid(&observer, &name).await;
    let started = Instant::now();
    let terminated: bool = observer
        .query_one("SELECT pg_terminate_backend($1)", &[&backend])
        .await
        .unwrap()
        .get(0);
    assert!(terminated);
    let out = finish(run, Duration::from_secs(20)).await;
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(termed.exists(), "the command did not get SIGTERM");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("lost"), "{stderr}");
    assert!(stderr.contains("SIGTERM"), "{stderr}");
}

#[tokio::test]
async fn a_command_that_ignores_sigterm_is_killed_after_the_grace_period() {
    let observer = connect().await;
    let dir = scratch("cli-kill");
    let ready = dir.join("ready");
    let name = unique_name("cli-kill");
    let script = format!(
        "trap '' TERM; touch '{}'; while true; do sleep 0.05; done",
        ready.display()
    );
    let run = start_run(&name, &["--grace", "1"], &script).await;
    wait_for_file(&ready).await;
    let backend = holder_pid(&observer, &name).await;
    let started = Instant::now();
    observer
        .execute("SELECT pg_terminate_backend($1)", &[&backend])
        .await
        .unwrap();
    let out = finish(run, Duration::from_secs(20)).await;
    let elapsed = started.elapsed();
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(elapsed >= Duration::from_secs(1), "{elapsed:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("SIGKILL"), "{stderr}");
}

#[tokio::test]
async fn key_prints_the_key_and_its_pg_locks_columns() {
    let key = |args: &'static [&'static str]| async move {
        let out = pglock().await.arg("key").args(args).output().await.unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, text) = key(&["billing.nightly"]).await;
    assert_eq!(code, Some(0));
    let k = pglock::key_for("billing.nightly").unwrap();
    let (classid, objid, _) = pglock::LockKey::Big(k).pg_locks_triple();
    assert!(text.contains(&format!("key:      {k} (bigint)")), "{text}");
    assert!(
        text.contains(&format!(
            "classid = {classid}, objid = {objid}, objsubid = 1"
        )),
        "{text}"
    );
    assert!(text.contains("FROM pg_catalog.pg_locks WHERE"), "{text}");

    let (code, text) = key(&["hello", "--scheme", "django"]).await;
    assert_eq!(code, Some(0));
    assert!(text.contains("1054880662928880172"), "{text}");
    assert!(
        text.contains("classid = 245608543, objid = 3125670444, objsubid = 1"),
        "{text}"
    );

    let (code, text) = key(&["123456789", "--scheme", "with-advisory-lock"]).await;
    assert_eq!(code, Some(0));
    assert!(text.contains("(1274296614, 0) (two integers)"), "{text}");
    assert!(text.contains("objsubid = 2"), "{text}");

    let (code, _) = key(&["a name too long", "--scheme", "distributed-lock"]).await;
    assert_eq!(code, Some(2), "DistributedLock refuses it without hashing");
    let (code, _) = key(&[
        "a name too long",
        "--scheme",
        "distributed-lock",
        "--allow-hashing",
    ])
    .await;
    assert_eq!(code, Some(0));

    // The printed SQL finds a lock really held on that key.
    let observer = connect().await;
    let holder = connect().await;
    holder
        .execute("SELECT pg_advisory_lock($1)", &[&k])
        .await
        .unwrap();
    let (_, text) = key(&["billing.nightly"]).await;
    let find = text
        .lines()
        .find_map(|l| l.strip_prefix("find:"))
        .unwrap()
        .trim();
    let rows = observer.query(find, &[]).await.unwrap();
    let pid: i32 = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(rows.iter().any(|r| r.get::<_, i32>(0) == pid), "{find}");
    holder
        .execute("SELECT pg_advisory_unlock($1)", &[&k])
        .await
        .unwrap();
}

#[tokio::test]
async fn status_json_lists_holders_waiters_and_blockers() {
    let observer = connect().await;
    let held = HeldRun::start(&observer, "cli-status-json", &["--label", "cli-holder"]).await;
    let (name, holder_backend) = (held.name.clone(), held.pid);
    let waiter = pglock()
        .await
        .args(["run", &name, "--", "true"])
        .spawn()
        .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            lock_rows(&observer, &name).await.len() == 2
        })
        .await
    );
    let waiter_backend = lock_rows(&observer, &name)
        .await
        .into_iter()
        .find(|r| !r.granted)
        .unwrap()
        .pid;

    let out = output(["status", "--json", &name]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    let locks = json["locks"].as_array().unwrap();
    assert_eq!(locks.len(), 1, "only the named lock: {json}");
    let lock = &locks[0];
    assert_eq!(lock["name"], name.as_str());
    assert_eq!(lock["type"], "bigint");
    assert_eq!(lock["key"], pglock::key_for(&name).unwrap());
    assert_eq!(lock["objsubid"], 1);
    let holders = lock["holders"].as_array().unwrap();
    assert_eq!(holders.len(), 1, "{json}");
    assert_eq!(holders[0]["pid"], holder_backend);
    assert_eq!(holders[0]["mode"], "exclusive");
    assert_eq!(holders[0]["application_name"], "cli-holder");
    assert_eq!(holders[0]["client_addr"], "127.0.0.1");
    assert!(holders[0]["backend_start"].is_string());
    let waiters = lock["waiters"].as_array().unwrap();
    assert_eq!(waiters.len(), 1, "{json}");
    assert_eq!(waiters[0]["pid"], waiter_backend);
    assert_eq!(
        waiters[0]["blocked_by"],
        serde_json::json!([holder_backend])
    );
    assert!(waiters[0]["waiting_since"].is_string());

    // Without names: every lock, this one among them (no name known).
    let all = output(["status", "--json"]).await;
    let all: serde_json::Value = serde_json::from_slice(&all.stdout).unwrap();
    let ours = all["locks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["key"] == pglock::key_for(&name).unwrap())
        .expect("listed");
    assert!(ours["name"].is_null());

    // The table names the lock and both sessions.
    let table = output(["status", &name]).await;
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains(&name), "{table}");
    assert!(
        table.contains("holds") && table.contains("waits"),
        "{table}"
    );

    held.stop().await;
    finish(waiter, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn release_terminates_only_with_yes() {
    let observer = connect().await;
    let held = HeldRun::start(&observer, "cli-release", &[]).await;
    let (name, backend) = (held.name.clone(), held.pid);

    let refused = output(["release", "--terminate", &backend.to_string()]).await;
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--yes"), "{stderr}");
    assert!(stderr.contains("pg_terminate_backend"), "{stderr}");
    assert_eq!(holder_pid(&observer, &name).await, backend, "still held");

    let done = output(["release", "--terminate", &backend.to_string(), "--yes"]).await;
    assert_eq!(done.status.code(), Some(0), "{done:?}");
    assert!(
        eventually(Duration::from_secs(5), || async {
            lock_rows(&observer, &name).await.is_empty()
        })
        .await
    );
    // The holder's pglock saw the loss and stopped its command.
    let out = finish(held.run, Duration::from_secs(20)).await;
    assert_eq!(out.status.code(), Some(4), "{out:?}");
}

#[tokio::test]
async fn unreachable_server_names_what_was_tried() {
    let out = pglock()
        .await
        .args(["--url", "postgres://someone@127.0.0.1:1/somedb", "status"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("127.0.0.1:1"), "{stderr}");
    assert!(
        stderr.contains("someone") && stderr.contains("somedb"),
        "{stderr}"
    );

    // The PG* variables, when nothing else is given.
    let out = Command::new(env!("CARGO_BIN_EXE_pglock"))
        .env_remove("DATABASE_URL")
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", "1")
        .env("PGUSER", "pguser-from-env")
        .args(["status"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("pguser-from-env"), "{stderr}");
    assert!(stderr.contains("PG* variables"), "{stderr}");

    // verify-full without root certificates (and no ~/.postgresql/root.crt).
    let out = Command::new(env!("CARGO_BIN_EXE_pglock"))
        .env_remove("DATABASE_URL")
        .env("HOME", "/nonexistent")
        .env("PGSSLMODE", "verify-full")
        .args(["status"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("sslrootcert"), "{stderr}");

    let out = Command::new(env!("CARGO_BIN_EXE_pglock"))
        .env_remove("DATABASE_URL")
        .env("PGSSLMODE", "verify_full")
        .args(["status"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("PGSSLMODE"), "{stderr}");
}

#[tokio::test]
async fn tls_verify_full_against_a_tls_server() {
    let certs = pglock_tests::TlsCerts::make();
    let cluster = certs.cluster();
    let base = format!(
        "postgres://postgres@localhost:{}/postgres?hostaddr=127.0.0.1",
        cluster.port()
    );
    let status = |url: String, envs: Vec<(&'static str, String)>| async move {
        Command::new(env!("CARGO_BIN_EXE_pglock"))
            .env_remove("PGSSLMODE")
            .env_remove("PGSSLROOTCERT")
            .envs(envs)
            .args(["--url", &url, "status", "--json"])
            .output()
            .await
            .unwrap()
    };
    let with = |ca: &str| format!("{base}&sslmode=verify-full&sslrootcert={}", certs.path(ca));

    let ok = status(with("ca.pem"), vec![]).await;
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    let json: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert!(json["locks"].is_array());

    let bad = status(with("wrong-ca.pem"), vec![]).await;
    assert_eq!(bad.status.code(), Some(3), "{bad:?}");
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("invalid peer certificate"), "{stderr}");
    assert!(stderr.contains("verify-full"), "{stderr}");

    // The same through PGSSLMODE and PGSSLROOTCERT (the URL names no sslmode).
    let env_ok = status(
        base.clone(),
        vec![
            ("PGSSLMODE", "verify-full".to_string()),
            ("PGSSLROOTCERT", certs.path("ca.pem")),
        ],
    )
    .await;
    assert_eq!(env_ok.status.code(), Some(0), "{env_ok:?}");
    let env_bad = status(
        base.clone(),
        vec![
            ("PGSSLMODE", "verify-full".to_string()),
            ("PGSSLROOTCERT", certs.path("wrong-ca.pem")),
        ],
    )
    .await;
    assert_eq!(env_bad.status.code(), Some(3), "{env_bad:?}");
}

#[tokio::test]
async fn pg_variables_connect() {
    // The test URL taken apart into PG* variables.
    let url: tokio_postgres::Config = database_url().await.parse().unwrap();
    let host = match &url.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
    };
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pglock"));
    cmd.env_remove("DATABASE_URL")
        .env("PGHOST", host)
        .env(
            "PGPORT",
            url.get_ports().first().unwrap_or(&5432).to_string(),
        )
        .env("PGUSER", url.get_user().unwrap())
        .env("PGDATABASE", url.get_dbname().unwrap_or("postgres"));
    if let Some(pw) = url.get_password() {
        cmd.env("PGPASSWORD", String::from_utf8_lossy(pw).into_owned());
    }
    let out = cmd.args(["status", "--json"]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(json["locks"].is_array());
}

#[tokio::test]
async fn a_closed_stdout_pipe_ends_quietly() {
    // The reader closes its end at once, so pglock's write meets EPIPE.
    let script = format!(
        "'{}' key billing.nightly | (exec 0<&-; sleep 0.5); echo \"${{PIPESTATUS[0]:-?}}\"",
        env!("CARGO_BIN_EXE_pglock")
    );
    let out = Command::new("bash")
        .args(["-c", &script])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let status = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        status == "141" || status == "0",
        "pglock exited {status}: {stderr}"
    );
}

/// `status` names locks the server's name registry knows, and `--dir` keeps a
/// directory's locks only.
#[tokio::test]
async fn status_uses_the_name_registry_and_directories() {
    let observer = connect().await;
    pglock::install_registry(&observer).await.unwrap();
    let dir = unique_name("cli-dir").replace(':', "-");
    let (inside, outside) = (format!("{dir}/report"), unique_name("cli-outside"));
    pglock::register(&observer, &inside).await.unwrap();
    let holder = connect().await;
    for name in [&inside, &outside] {
        holder
            .execute(
                "SELECT pg_advisory_lock($1)",
                &[&pglock::key_for(name).unwrap()],
            )
            .await
            .unwrap();
    }
    let out = pglock()
        .await
        .args(["status", "--json", "--dir", &dir])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let locks = json["locks"].as_array().unwrap();
    assert_eq!(locks.len(), 1, "only the directory's lock: {json}");
    assert_eq!(locks[0]["name"], inside.as_str(), "named from the registry");
    holder
        .execute("SELECT pg_advisory_unlock_all()", &[])
        .await
        .unwrap();
}
