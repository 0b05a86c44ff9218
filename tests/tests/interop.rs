//! Interop with a real peer: django-pglock (Python, Django) and pglock exclude each
//! other on the same name when pglock uses `LockKey::django_pglock(name)`.
//!
//! The peer runs for real: a cached virtualenv under the target directory with
//! Django, django-pglock and psycopg2 (made on the first run). Where Python, its
//! `venv` module or pip's package index are unavailable, the tests print why and
//! skip — unless `PGLOCK_INTEROP_REQUIRED` is set (CI), which turns a skip into a
//! failure.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use pglock::LockKey;
use pglock_tests::{bigint_lock_rows, connect, database_url, pool, unique_name};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// The peer's interpreter and script, or `None` (printed) when the test skips.
fn peer() -> Option<(PathBuf, PathBuf)> {
    match pglock_tests::django_pglock_peer(env!("CARGO_TARGET_TMPDIR").as_ref()) {
        Ok(peer) => Some(peer),
        Err(why) if std::env::var_os("PGLOCK_INTEROP_REQUIRED").is_none() => {
            eprintln!("SKIPPED: no django-pglock peer on this machine: {why}");
            None
        }
        Err(why) => panic!("PGLOCK_INTEROP_REQUIRED is set, but: {why}"),
    }
}

/// Starts the peer script with `args`, stdin and stdout piped.
async fn start(peer: &(PathBuf, PathBuf), args: &[&str]) -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut child = Command::new(&peer.0)
        .arg(&peer.1)
        .args(args)
        .env("PGLOCK_PEER_URL", database_url().await)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the django-pglock peer");
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines)
}

/// The peer's next line of output, within 30 s.
async fn next_line(lines: &mut Lines<BufReader<ChildStdout>>) -> String {
    tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the peer answers within 30 s")
        .expect("read the peer's output")
        .expect("the peer printed a line before exiting (see its stderr above)")
}

/// One non-blocking attempt by the peer: `(acquired, key it used)`.
async fn peer_try(peer: &(PathBuf, PathBuf), name: &str) -> (bool, i64) {
    let (mut child, mut lines) = start(peer, &["try", name]).await;
    let line = next_line(&mut lines).await;
    let status = child.wait().await.unwrap();
    assert!(status.success(), "peer failed: {status}");
    let (word, key) = line.split_once(' ').expect("`WORD key`");
    let acquired = match word {
        "ACQUIRED" => true,
        "BUSY" => false,
        other => panic!("unexpected peer output {other:?}"),
    };
    (acquired, key.parse().unwrap())
}

#[tokio::test]
async fn pglock_sees_a_lock_django_pglock_holds() {
    let Some(peer) = peer() else { return };
    let name = unique_name("interop-django-holds");
    let key = LockKey::django_pglock(&name).unwrap();
    let LockKey::Big(big) = key else {
        panic!("django-pglock keys are bigints")
    };
    let observer = connect().await;
    let pool = pool(2).await;

    let (mut child, mut lines) = start(&peer, &["hold", &name]).await;
    let held = next_line(&mut lines).await;
    let mut words = held.split(' ');
    assert_eq!(words.next(), Some("HELD"), "{held}");
    let peer_key: i64 = words.next().unwrap().parse().unwrap();
    let peer_pid: i32 = words.next().unwrap().parse().unwrap();
    assert_eq!(peer_key, big, "django-pglock computed another key");

    // pg_locks, read with the harness's own SQL: the peer's backend holds it.
    let rows = bigint_lock_rows(&observer, big).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].pid, peer_pid);
    assert!(rows[0].granted);
    assert_eq!(rows[0].mode, "ExclusiveLock");

    // pglock, same name through the django scheme: busy.
    let busy = pglock::advisory(key).try_acquire(&pool).await.unwrap();
    assert!(busy.is_none(), "pglock got a lock django-pglock holds");
    let status = pglock::status(&observer, key).await.unwrap();
    assert_eq!(
        status.holders.iter().map(|h| h.pid).collect::<Vec<_>>(),
        [peer_pid]
    );
    assert_eq!(
        status.holders[0].application_name.as_deref(),
        Some("django-pglock-peer")
    );
    // pglock's own scheme is another key: free.
    let own = pglock::advisory(name.as_str())
        .try_acquire(&pool)
        .await
        .unwrap()
        .expect("pglock's own key for the name is a different lock");
    own.release().await.unwrap();

    // The peer releases; now pglock gets it.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"release\n").await.unwrap();
    stdin.flush().await.unwrap();
    assert_eq!(next_line(&mut lines).await, "RELEASED");
    assert!(child.wait().await.unwrap().success());
    let guard = pglock::advisory(key)
        .try_acquire(&pool)
        .await
        .unwrap()
        .expect("free once django-pglock released it");
    guard.release().await.unwrap();
}

#[tokio::test]
async fn django_pglock_sees_a_lock_pglock_holds() {
    let Some(peer) = peer() else { return };
    let name = unique_name("interop-pglock-holds");
    let key = LockKey::django_pglock(&name).unwrap();
    let pool = pool(2).await;

    let guard = pglock::advisory(key).acquire(&pool).await.unwrap();
    let (acquired, peer_key) = peer_try(&peer, &name).await;
    assert_eq!(LockKey::Big(peer_key), key);
    assert!(!acquired, "django-pglock got a lock pglock holds");

    guard.release().await.unwrap();
    let (acquired, _) = peer_try(&peer, &name).await;
    assert!(acquired, "django-pglock could not take the free lock");
}
