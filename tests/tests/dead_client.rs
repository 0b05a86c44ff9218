//! A client that vanishes without closing its connection (power loss, network
//! partition) keeps its advisory locks until the server notices the dead peer.
//! With pglock's dead-peer settings (`configure_keepalives`, applied by
//! `Session::connect`) the server notices within about 25 s (10 s idle + 3 probes
//! 5 s apart). This test measures it: a child process in its own network namespace
//! takes a lock, then its link goes down, and the server is watched until it frees
//! the lock. It needs root and iproute2 (`ip netns`); elsewhere it says so and
//! does nothing.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pglock_tests::netns::{usable, Cut, Namespace};
use pglock_tests::{connect_to, eventually, holders, unique_name, Cluster};

const CHILD: &str = "PGLOCK_DEAD_CLIENT_URL";

/// Not a test: the vanishing client, run inside the namespace by the test below.
#[test]
#[ignore = "entry point of the child process of the dead-client test"]
fn dead_client_child() {
    let Ok(url) = std::env::var(CHILD) else {
        return;
    };
    let name = std::env::var("PGLOCK_DEAD_CLIENT_NAME").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let session = pglock::Session::connect(&url).await.unwrap();
        let _guard = pglock::advisory(name.as_str())
            .acquire(&session)
            .await
            .unwrap();
        println!("READY");
        tokio::time::sleep(Duration::from_secs(120)).await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_frees_the_locks_of_a_vanished_client() {
    if let Err(why) = usable() {
        println!("dead-client test not run: needs root and `ip netns` ({why})");
        return;
    }
    let n = (std::process::id() % 200 + 20) as u8;
    let ns = Namespace::create("dc", 231, n).expect("network namespace");
    let host = ns.host_ip();
    let listen = format!("127.0.0.1,{host}");
    let hba = format!("host all all {} trust", ns.subnet());
    let cluster =
        Cluster::start_with_hba(&[("listen_addresses", &listen)], &[&hba]).expect("cluster");
    let observer = connect_to(&cluster.url()).await;
    let name = unique_name("dead-client");
    let url = format!("postgres://postgres@{host}:{}/postgres", cluster.port());
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .arg(std::env::current_exe().unwrap())
        .args(["dead_client_child", "--exact", "--ignored", "--nocapture"])
        .env(CHILD, &url)
        .env("PGLOCK_DEAD_CLIENT_NAME", &name)
        .stdout(Stdio::null())
        .spawn()
        .expect("child");
    let held = eventually(Duration::from_secs(30), || async {
        holders(&observer, &name).await.len() == 1
    })
    .await;
    assert!(held, "the child never took the lock");
    let cut_at = Instant::now();
    ns.cut(Cut::Both).unwrap();
    let freed = eventually(Duration::from_secs(60), || async {
        holders(&observer, &name).await.is_empty()
    })
    .await;
    let after = cut_at.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "FIGURE server freed a vanished client's lock after (s): {:.1}",
        after.as_secs_f64()
    );
    assert!(
        freed,
        "the server kept a vanished client's lock for over 60 s"
    );
    assert!(
        after >= Duration::from_secs(5),
        "freed after {after:?}: the link cut did not take"
    );
}
