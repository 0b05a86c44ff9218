//! Sessions: shared locks taken through clones of one `Session` stack (both
//! granted, the lock is held until the last release), exclusive ones exclude each
//! other as different sessions do, and one session can be shared by concurrent
//! tasks.

use std::time::Duration;

use pglock_tests::{
    advisory_locks_of, connect, eventually, holders, lock_rows, pid_of, unique_name,
};

/// Shared guards of one session stack (both granted, held until the last
/// release); an exclusive one is kept out of them in the process.
#[tokio::test]
async fn one_session_stacks_shared_guards() {
    let fx = pglock_tests::Fixture::new("session-stack").await;
    let s = pglock_tests::session().await;
    let clone = s.clone();
    let pid = pid_of(s.client()).await;
    let name = fx.name.as_str();

    let first = pglock::advisory(name).shared().acquire(&s).await.unwrap();
    let second = pglock::advisory(name)
        .shared()
        .timeout(Duration::ZERO)
        .acquire(&clone)
        .await
        .expect("the same session takes its own shared lock again");
    assert_eq!(fx.holders().await, vec![pid]);
    // An exclusive guard of the same session is kept out.
    let err = pglock::advisory(name)
        .timeout(Duration::ZERO)
        .acquire(&clone)
        .await
        .unwrap_err();
    assert!(err.is_not_acquired(), "{err}");

    // Another session is kept out while the stack is held.
    let other = pglock_tests::session().await;
    assert!(pglock::advisory(name)
        .try_acquire(&other)
        .await
        .unwrap()
        .is_none());

    first.release().await.unwrap();
    assert_eq!(fx.holders().await, vec![pid], "one release of two freed the lock");
    assert!(pglock::advisory(name)
        .try_acquire(&other)
        .await
        .unwrap()
        .is_none());

    second.release().await.unwrap();
    assert!(fx.rows().await.is_empty());
    let taken = pglock::advisory(name)
        .try_acquire(&other)
        .await
        .unwrap()
        .expect("free after the second release");
    taken.release().await.unwrap();
}

/// Stacked guards dropped instead of released: the lock goes away only after both.
#[tokio::test]
async fn stacked_guards_dropped_free_the_lock_after_the_last() {
    let observer = connect().await;
    let s = pglock_tests::session().await;
    let pid = pid_of(s.client()).await;
    let name = unique_name("session-stack-drop");
    let a = pglock::advisory(name.as_str()).shared().acquire(&s).await.unwrap();
    let b = pglock::advisory(name.as_str()).shared().acquire(&s).await.unwrap();
    drop(a);
    // The unlock of `a` is queued ahead of this query on the same connection.
    s.client().query_one("SELECT 1", &[]).await.unwrap();
    assert_eq!(holders(&observer, &name).await, vec![pid]);
    drop(b);
    assert!(
        eventually(Duration::from_secs(10), || async {
            advisory_locks_of(&observer, pid).await == 0
        })
        .await
    );
}

#[tokio::test]
async fn different_sessions_exclude_each_other() {
    let observer = connect().await;
    let a = pglock_tests::session().await;
    let b = pglock_tests::session().await;
    let name = unique_name("session-exclude");
    let held = pglock::advisory(name.as_str()).acquire(&a).await.unwrap();
    let err = pglock::advisory(name.as_str())
        .timeout(Duration::from_millis(50))
        .acquire(&b)
        .await
        .unwrap_err();
    assert!(err.is_not_acquired(), "{err:?}");
    assert_eq!(err.holder().map(|h| h.pid), Some(pid_of(a.client()).await));
    held.release().await.unwrap();
    let got = pglock::advisory(name.as_str()).acquire(&b).await.unwrap();
    assert_eq!(
        holders(&observer, &name).await,
        vec![pid_of(b.client()).await]
    );
    got.release().await.unwrap();
}

/// One session shared by many tasks: each takes its own lock (and all take one
/// common shared lock, which stacks), concurrently, on the one connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_shared_across_tasks() {
    let observer = connect().await;
    let s = pglock_tests::session().await;
    let pid = pid_of(s.client()).await;
    let common = unique_name("session-tasks-common");
    let (all_held_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let (held_tx, mut held_rx) = tokio::sync::mpsc::channel::<()>(16);
    let mut tasks = Vec::new();
    let mut names = Vec::new();
    for i in 0..8 {
        let name = unique_name(&format!("session-tasks-{i}"));
        names.push(name.clone());
        let (s, common, held_tx) = (s.clone(), common.clone(), held_tx.clone());
        let mut go = all_held_tx.subscribe();
        tasks.push(tokio::spawn(async move {
            let own = pglock::advisory(name.as_str())
                .timeout(Duration::from_secs(5))
                .acquire(&s)
                .await?;
            let shared = pglock::advisory(common.as_str())
                .shared()
                .timeout(Duration::from_secs(5))
                .acquire(&s)
                .await?;
            held_tx.send(()).await.unwrap();
            go.recv().await.unwrap();
            own.release().await?;
            shared.release().await?;
            Ok::<_, pglock::Error>(())
        }));
    }
    for _ in 0..8 {
        held_rx.recv().await.unwrap();
    }
    for name in &names {
        assert_eq!(holders(&observer, name).await, vec![pid], "{name}");
    }
    assert_eq!(holders(&observer, &common).await, vec![pid]);
    all_held_tx.send(()).unwrap();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(advisory_locks_of(&observer, pid).await, 0);
}

/// `Session::connect` gives a working session whose locks others see.
#[tokio::test]
async fn session_connect_works() {
    let observer = connect().await;
    let s = pglock::Session::connect(&pglock_tests::database_url().await)
        .await
        .unwrap();
    assert!(!s.is_closed());
    let name = unique_name("session-connect");
    let guard = pglock::advisory(name.as_str()).acquire(&s).await.unwrap();
    assert_eq!(
        holders(&observer, &name).await,
        vec![pid_of(s.client()).await]
    );
    guard.release().await.unwrap();
    assert!(lock_rows(&observer, &name).await.is_empty());

    let err = pglock::Session::connect("this is not a connection string")
        .await
        .unwrap_err();
    assert!(err.is_invalid_argument(), "{err:?}");
}
