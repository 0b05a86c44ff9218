//! Partition safety: a holder cut off from the server learns that its lock is
//! lost (its local deadline) before the server can free the lock for anyone else.
//!
//! The namespace tests run a holder in a child process inside its own network
//! namespace and a waiter on the host, cut the holder's link — both ways, only
//! towards the server, only towards the holder — and record, on the test's clock,
//! when the holder's `Guard::lost()` completes and when the waiter is granted the
//! lock. The holder must always be first; the figures print the margin. Short
//! settings keep CI quick: keepalives of 2 s idle + 2 probes 1 s apart (server
//! bound 4 s) for a plain lock on `Session::connect_with`, and a 2 s lease with
//! automatic renewal through a pool. Three runs per scenario;
//! `PGLOCK_PARTITION_RUNS=20` for the README's figures, and
//! `PGLOCK_PARTITION_DEFAULTS=1` for a plain lock with the default keepalives. They need root and
//! iproute2 (`ip netns`, `tc`); elsewhere they say so and do nothing.
//!
//! The other tests need only the server: a healthy holder never loses its lock to
//! its deadline, also over a link that only slows down (a relay that delays
//! every byte 2 s each way: no `netem` here), every guard of a shared session gets
//! the contact one guard's check confirms, and settings that could not keep a lock
//! are refused.

use std::process::Stdio;
use std::time::{Duration, Instant};

use pglock::{Keepalive, Session};
use pglock_tests::netns::{usable, Cut, Namespace};
use pglock_tests::{
    connect_to, database_url, eventually, holders, pid_of, pool, pool_for, unique_name,
    wait_until_waiting, Cluster, Fixture, Relay,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

const CHILD: &str = "PGLOCK_PARTITION_URL";
/// Set, the plain-lock holder uses pglock's default keepalives (server bound 25 s)
/// and check interval instead of the short test settings.
const DEFAULTS: &str = "PGLOCK_PARTITION_DEFAULTS";
const LEASE: Duration = Duration::from_secs(2);
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The test's keepalives: the server gives a silent client up after 4 s.
fn short_keepalive() -> Keepalive {
    Keepalive::new(Duration::from_secs(2), Duration::from_secs(1), 2).unwrap()
}

fn runs() -> usize {
    std::env::var("PGLOCK_PARTITION_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

/// Not a test: the holder, run inside the namespace by the tests below. It takes
/// the lock, says READY, and reports what its guard says: LOST, HELD, and — once
/// told to RELEASE on stdin — RELEASED.
#[test]
#[ignore = "entry point of the child process of the partition tests"]
fn partition_child() {
    let Ok(url) = std::env::var(CHILD) else {
        return;
    };
    let name = std::env::var("PGLOCK_PARTITION_NAME").unwrap();
    let kind = std::env::var("PGLOCK_PARTITION_KIND").unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let lock = pglock::advisory(name.as_str());
        let guard = match kind.as_str() {
            "plain" if std::env::var(DEFAULTS).is_ok() => {
                let session = Session::connect(&url).await.unwrap();
                lock.acquire(&session).await.unwrap()
            }
            "plain" => {
                let session = Session::connect_with(&url, short_keepalive())
                    .await
                    .unwrap();
                lock.check_every(CHECK_EVERY)
                    .acquire(&session)
                    .await
                    .unwrap()
            }
            "locker" => {
                // A multiplexed connection: a locker's shared connection, from a
                // pool whose keepalives the lock is told of.
                let mut config: tokio_postgres::Config = url.parse().unwrap();
                short_keepalive().configure(&mut config);
                let manager = deadpool_postgres::Manager::new(config, tokio_postgres::NoTls);
                let pool = deadpool_postgres::Pool::builder(manager)
                    .max_size(2)
                    .build()
                    .unwrap();
                let locker = pglock::Locker::new(&pool, 1).await.unwrap();
                lock.keepalive(short_keepalive())
                    .check_every(CHECK_EVERY)
                    .acquire(&locker)
                    .await
                    .unwrap()
            }
            _ => {
                let pool = pool_for(&url, 1);
                lock.lease(LEASE).auto_renew().acquire(&pool).await.unwrap()
            }
        };
        say(&format!(
            "READY margin_ms={}",
            guard.safety_margin().unwrap().as_millis()
        ));
        let lost = guard.lost().await;
        say(&format!("LOST {lost}"));
        say(&format!("HELD {:?}", guard.is_held().await.ok()));
        tokio::task::spawn_blocking(|| std::io::stdin().read_line(&mut String::new()))
            .await
            .unwrap()
            .unwrap();
        let released = match tokio::time::timeout(Duration::from_secs(60), guard.release()).await {
            Ok(Ok(())) => "ok".to_string(),
            Ok(Err(e)) if e.is_lost() => "lost".to_string(),
            Ok(Err(e)) => format!("error {e}"),
            Err(_) => "timeout".to_string(),
        };
        say(&format!("RELEASED {released}"));
    });
}

fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The child's output lines, stamped on arrival.
struct Child {
    process: tokio::process::Child,
    lines: mpsc::UnboundedReceiver<(Instant, String)>,
}

impl Child {
    fn spawn(ns: &Namespace, url: &str, name: &str, kind: &str) -> Child {
        let mut process = tokio::process::Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .arg(std::env::current_exe().unwrap())
            .args(["partition_child", "--exact", "--ignored", "--nocapture"])
            .env(CHILD, url)
            .env("PGLOCK_PARTITION_NAME", name)
            .env("PGLOCK_PARTITION_KIND", kind)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("child");
        let mut out = BufReader::new(process.stdout.take().unwrap()).lines();
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = out.next_line().await {
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        Child { process, lines }
    }

    /// The next line starting with `prefix` (others are the test harness's), and
    /// when it arrived.
    async fn expect(&mut self, prefix: &str) -> (Instant, String) {
        let limit = Duration::from_secs(60);
        loop {
            match tokio::time::timeout(limit, self.lines.recv()).await {
                Ok(Some((at, line))) if line.starts_with(prefix) => return (at, line),
                Ok(Some(_)) => {}
                Ok(None) => panic!("the holder exited before saying {prefix}"),
                Err(_) => panic!("the holder did not say {prefix} within {limit:?}"),
            }
        }
    }

    async fn tell(&mut self, line: &str) {
        let stdin = self.process.stdin.as_mut().unwrap();
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
    }
}

/// What one run measured, from the cut.
struct Run {
    lost: Duration,
    acquired: Duration,
}

/// One run: the holder takes the lock in the namespace, a waiter on the host
/// queues for it, the link is cut, and the two are timed.
async fn one_run(cluster: &Cluster, ns: &Namespace, kind: &str, cut: Cut) -> Run {
    let name = unique_name(&format!("partition-{kind}"));
    let holder_url = format!(
        "postgres://postgres@{}:{}/postgres",
        ns.host_ip(),
        cluster.port()
    );
    let observer = connect_to(&cluster.url()).await;
    let mut child = Child::spawn(ns, &holder_url, &name, kind);
    let (_, ready) = child.expect("READY").await;
    assert_eq!(holders(&observer, &name).await.len(), 1, "{ready}");
    let waiter = Session::connect(&cluster.url()).await.unwrap();
    let waiter_pid = pid_of(waiter.client()).await;
    let wanted = pglock::advisory(name.as_str()).timeout(Duration::from_secs(60));
    let waiting = {
        let waiter = waiter.clone();
        tokio::spawn(async move {
            let guard = wanted.acquire(&waiter).await;
            (Instant::now(), guard)
        })
    };
    wait_until_waiting(&observer, &name, Some(waiter_pid)).await;
    // Some confirmations (checks, renewals) go through before the cut.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let cut_at = Instant::now();
    ns.cut(cut).expect("cut the link");
    let (lost_at, lost) = child.expect("LOST").await;
    let (acquired_at, granted) = tokio::time::timeout(Duration::from_secs(60), waiting)
        .await
        .expect("the waiter was never granted the lock")
        .unwrap();
    let waiter_guard = granted.expect("the waiter's acquire");
    assert!(
        lost_at < acquired_at,
        "{kind}, {cut:?}: the holder learned of the loss {:?} after the waiter acquired ({lost})",
        lost_at - acquired_at
    );
    println!(
        "run {kind}, {cut:?}: holder told {:.2} s after the cut, waiter granted {:.2} s: {lost}",
        (lost_at - cut_at).as_secs_f64(),
        (acquired_at - cut_at).as_secs_f64()
    );
    let (_, held) = child.expect("HELD").await;
    assert_eq!(held, "HELD Some(false)", "is_held() after the loss");
    ns.heal().expect("heal the link");
    child.tell("RELEASE").await;
    let (_, released) = child.expect("RELEASED").await;
    assert_eq!(
        released, "RELEASED lost",
        "{kind}, {cut:?}: the holder's release must say the lock was lost"
    );
    assert_eq!(holders(&observer, &name).await, vec![waiter_pid]);
    waiter_guard.release().await.unwrap();
    let free = eventually(Duration::from_secs(5), || async {
        holders(&observer, &name).await.is_empty()
    })
    .await;
    assert!(free, "something was left held");
    let _ = tokio::time::timeout(Duration::from_secs(10), child.process.wait()).await;
    Run {
        lost: lost_at - cut_at,
        acquired: acquired_at - cut_at,
    }
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

async fn scenario(kind: &str, net_index: u8) {
    if let Err(why) = usable() {
        println!("partition test ({kind}) not run: needs root and `ip netns` ({why})");
        return;
    }
    let n = (std::process::id() % 100) as u8 * 2 + net_index;
    let ns = Namespace::create("pt", 232, n).expect("network namespace");
    let listen = format!("127.0.0.1,{}", ns.host_ip());
    let hba = format!("host all all {} trust", ns.subnet());
    let cluster =
        Cluster::start_with_hba(&[("listen_addresses", &listen)], &[&hba]).expect("cluster");
    let runs = runs();
    for cut in [Cut::Both, Cut::ToHost, Cut::ToNamespace] {
        let mut measured = Vec::new();
        for _ in 0..runs {
            measured.push(one_run(&cluster, &ns, kind, cut).await);
        }
        let margins: Vec<Duration> = measured.iter().map(|r| r.acquired - r.lost).collect();
        let min = margins.iter().min().copied().unwrap();
        println!(
            "FIGURE partition, {kind} lock{}, link cut {}: holder reported loss {:.2} s after the \
             cut, waiter acquired {:.2} s after it (medians); holder first by min {:.0} ms / \
             median {:.0} ms (n={runs})",
            match std::env::var(DEFAULTS) {
                Ok(_) if kind == "plain" => " (default keepalives)",
                _ => "",
            },
            match cut {
                Cut::Both => "both ways",
                Cut::ToHost => "towards the server only",
                Cut::ToNamespace => "towards the holder only",
            },
            median(measured.iter().map(|r| r.lost).collect()).as_secs_f64(),
            median(measured.iter().map(|r| r.acquired).collect()).as_secs_f64(),
            min.as_secs_f64() * 1e3,
            median(margins).as_secs_f64() * 1e3,
        );
    }
}

/// A plain lock on a session with (short) keepalives: the server frees it 4 s
/// after it last heard from the holder; the holder's deadline comes first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_lock_holder_learns_of_a_partition_first() {
    scenario("plain", 0).await;
}

/// A lock on a locker's shared (multiplexed) connection, with the pool's short
/// keepalives stated: the same guarantee as a plain session lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiplexed_lock_holder_learns_of_a_partition_first() {
    scenario("locker", 2).await;
}

/// A 2 s lease renewed automatically: the server ends the session 2 s after the
/// last renewal it got; the holder's deadline comes first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leased_lock_holder_learns_of_a_partition_first() {
    scenario("lease", 1).await;
}

/// A healthy holder whose checks are answered keeps its lock well past the
/// server bound, and every guard on the shared connection gets the contact one
/// guard's checks confirm.
#[tokio::test]
async fn a_healthy_holder_never_loses_its_lock_to_its_deadline() {
    let f = Fixture::new("partition-healthy").await;
    let other = unique_name("partition-healthy-other");
    let session = Session::connect_with(&database_url().await, short_keepalive())
        .await
        .unwrap();
    let watched = pglock::advisory(f.name.as_str())
        .check_every(CHECK_EVERY)
        .acquire(&session)
        .await
        .unwrap();
    let first = watched
        .deadline()
        .expect("a session made by connect has a deadline");
    // The 4 s bound less 1 % and a margin of a tenth (400 ms): 3.56 s.
    assert_eq!(watched.safety_margin(), Some(Duration::from_millis(400)));
    let span = first - watched.acquired_at();
    assert!(
        span <= Duration::from_millis(3560) && span > Duration::from_millis(3000),
        "{span:?}"
    );
    // Contact is the connection's: the next grant on it moves this deadline.
    let unwatched = pglock::advisory(other.as_str())
        .acquire(&session)
        .await
        .unwrap();
    assert!(watched.deadline().unwrap() >= first);
    let outlived = tokio::time::timeout(Duration::from_secs(6), watched.lost()).await;
    assert!(
        outlived.is_err(),
        "lost() fired on a healthy lock: {outlived:?}"
    );
    assert!(watched.deadline().unwrap() > first + Duration::from_secs(4));
    // The unwatched guard's deadline moved with its connection's contact.
    assert!(unwatched.deadline().unwrap() > Instant::now());
    assert!(unwatched.is_held().await.unwrap());
    assert_eq!(f.holders().await, vec![pid_of(session.client()).await]);
    watched.release().await.unwrap();
    unwatched.release().await.unwrap();
    assert!(f.until_free().await);
}

/// An automatically renewed lease keeps its deadline ahead: each renewal
/// confirms contact.
#[tokio::test]
async fn renewals_move_a_leased_locks_deadline() {
    let f = Fixture::new("partition-lease").await;
    let pool = pool(1).await;
    let guard = pglock::advisory(f.name.as_str())
        .lease(Duration::from_millis(900))
        .auto_renew()
        .acquire(&pool)
        .await
        .unwrap();
    let first = guard.deadline().expect("a lease gives a deadline");
    assert_eq!(guard.safety_margin(), Some(Duration::from_millis(90)));
    let outlived = tokio::time::timeout(Duration::from_secs(3), guard.lost()).await;
    assert!(
        outlived.is_err(),
        "lost() fired on a renewed lease: {outlived:?}"
    );
    assert!(guard.deadline().unwrap() > first + Duration::from_secs(2));
    assert_eq!(f.holders().await.len(), 1);
    guard.release().await.unwrap();
    assert!(f.until_free().await);
}

/// A lock nobody renews or checks is given up by its guard before the server
/// frees it: `lost()` completes at the deadline, without the server.
#[tokio::test]
async fn an_unrenewed_lease_is_lost_locally_before_the_server_frees_it() {
    let f = Fixture::new("partition-unrenewed").await;
    let pool = pool(1).await;
    let guard = pglock::advisory(f.name.as_str())
        .lease(Duration::from_secs(2))
        .acquire(&pool)
        .await
        .unwrap();
    let lost = guard.lost().await;
    assert!(lost.is_lost(), "{lost}");
    assert!(lost.to_string().contains("deadline"), "{lost}");
    // The server still holds it: the guard gave it up early, not late.
    assert_eq!(f.holders().await.len(), 1, "freed before the holder knew");
    assert!(f.until_free().await, "the server kept an expired lease");
    assert!(guard.release().await.unwrap_err().is_lost());
}

/// Settings that could not keep a healthy lock are refused before anything is
/// sent.
#[tokio::test]
async fn unworkable_settings_are_refused_and_nothing_is_held() {
    let f = Fixture::new("partition-refused").await;
    let session = Session::connect_with(&database_url().await, short_keepalive())
        .await
        .unwrap();
    // The deadline is 3.56 s after a contact; a check every 2 s is too rare.
    let err = pglock::advisory(f.name.as_str())
        .check_every(Duration::from_secs(2))
        .acquire(&session)
        .await
        .unwrap_err();
    assert!(err.is_invalid_argument(), "{err}");
    assert!(err.to_string().contains("check_every"), "{err}");
    let err = pglock::advisory(f.name.as_str())
        .safety_margin(Duration::from_secs(4))
        .try_acquire(&session)
        .await
        .unwrap_err();
    assert!(err.is_invalid_argument(), "{err}");
    // A 90 s lease renewed every 30 s cannot keep up with 25 s keepalives.
    let pool = pool(1).await;
    let err = pglock::advisory(f.name.as_str())
        .keepalive(Keepalive::default())
        .lease(Duration::from_secs(90))
        .auto_renew()
        .acquire(&pool)
        .await
        .unwrap_err();
    assert!(err.is_invalid_argument(), "{err}");
    assert!(f.rows().await.is_empty());
    assert!(
        Keepalive::new(Duration::from_millis(500), Duration::from_secs(1), 2)
            .unwrap_err()
            .is_invalid_argument()
    );
    // The session is still usable.
    let guard = pglock::advisory(f.name.as_str())
        .acquire(&session)
        .await
        .unwrap();
    guard.release().await.unwrap();
}

/// A link that only slows down — everything 2 s late each way, so each check
/// takes 4 s — does not cost a holder the lock the server still grants it: with
/// keepalives of 6 s + 2 × 3 s (server bound 12 s, local deadline 10.68 s after a
/// contact, checks every 5 s) the guard keeps it past the server bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_link_does_not_lose_a_lock_the_server_still_grants() {
    let f = Fixture::new("partition-slow").await;
    let upstream: tokio_postgres::Config = database_url().await.parse().unwrap();
    let Some(relay) = Relay::start(&upstream).await else {
        println!("slow-link test not run: the server is not reached over TCP");
        return;
    };
    let c = relay.config();
    let mut url = format!("host=127.0.0.1 port={}", c.get_ports()[0]);
    if let Some(user) = c.get_user() {
        url += &format!(" user={user}");
    }
    if let Some(password) = c.get_password() {
        url += &format!(" password={}", String::from_utf8_lossy(password));
    }
    if let Some(dbname) = c.get_dbname() {
        url += &format!(" dbname={dbname}");
    }
    let keepalive = Keepalive::new(Duration::from_secs(6), Duration::from_secs(3), 2).unwrap();
    let session = Session::connect_with(&url, keepalive).await.unwrap();
    let guard = pglock::advisory(f.name.as_str())
        .acquire(&session)
        .await
        .unwrap();
    let pid = f.holders().await;
    assert_eq!(pid.len(), 1);
    // Prepared while the link is fast: a check is then one round trip.
    assert!(guard.is_held().await.unwrap());
    relay.set_delay(Duration::from_secs(2));
    let asked = Instant::now();
    assert!(guard.is_held().await.unwrap());
    let round_trip = asked.elapsed();
    assert!(round_trip >= Duration::from_secs(4), "{round_trip:?}");
    let kept = tokio::time::timeout(Duration::from_secs(13), guard.lost()).await;
    assert!(kept.is_err(), "lost over a slow link: {kept:?}");
    assert_eq!(f.holders().await, pid, "the server still grants it");
    println!(
        "FIGURE slow link (2 s each way, check round trip {:.1} s): lock kept for 13 s, past \
         the 12 s server bound",
        round_trip.as_secs_f64()
    );
    relay.set_delay(Duration::ZERO);
    tokio::time::sleep(Duration::from_secs(2)).await;
    guard.release().await.unwrap();
    assert!(f.until_free().await);
}
