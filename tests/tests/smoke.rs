//! smoke
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke() {
    let pool = pglock_tests::pool(4).await;
    let observer = pglock_tests::connect().await;
    let name = pglock_tests::unique_name("smoke");
    let g = pglock::advisory(name.as_str())
        .acquire(&pool)
        .await
        .unwrap();
    println!("{g:?}");
    assert_eq!(pglock_tests::holders(&observer, &name).await.len(), 1);
    let e = pglock::advisory(name.as_str())
        .timeout(Duration::from_millis(200))
        .acquire(&pool)
        .await
        .unwrap_err();
    println!("{e}");
    let e = pglock::advisory(name.as_str())
        .timeout(Duration::ZERO)
        .acquire(&pool)
        .await
        .unwrap_err();
    println!("{e}");
    let st = pglock::status(&observer, name.as_str()).await.unwrap();
    println!("{st:?}");
    g.release().await.unwrap();
    assert!(pglock_tests::holders(&observer, &name).await.is_empty());
    let c = pool.get().await.unwrap();
    let r = c.query_one("SHOW lock_timeout", &[]).await.unwrap();
    println!("lock_timeout {}", r.get::<_, String>(0));
    let mut client = pglock_tests::connect().await;
    client
        .batch_execute("SET lock_timeout = '5s'")
        .await
        .unwrap();
    let g = pglock::advisory(name.as_str())
        .acquire(&pool)
        .await
        .unwrap();
    let tx = client.transaction().await.unwrap();
    let e = pglock::advisory(name.as_str())
        .timeout(Duration::from_millis(100))
        .xact()
        .acquire_in(&tx)
        .await
        .unwrap_err();
    println!("xact: {e}");
    let r = tx.query_one("SHOW lock_timeout", &[]).await.unwrap();
    println!("tx lock_timeout after {}", r.get::<_, String>(0));
    drop(g);
    pglock::advisory(name.as_str())
        .timeout(Duration::from_millis(2000))
        .xact()
        .acquire_in(&tx)
        .await
        .unwrap();
    let r = tx.query_one("SHOW lock_timeout", &[]).await.unwrap();
    println!("tx lock_timeout after ok {}", r.get::<_, String>(0));
    tx.commit().await.unwrap();
    let cl = pglock_tests::Cluster::start(&[("max_locks_per_transaction", "10")]).unwrap();
    println!("cluster {}", cl.url());
    let p2 = pglock_tests::pool_for(&cl.url(), 2);
    let sess = pglock::Session::new(pglock_tests::connect_to(&cl.url()).await);
    let mut gs = vec![];
    for i in 0..2000i64 {
        match pglock::advisory(i).acquire(&sess).await {
            Ok(g) => gs.push(g),
            Err(e) => {
                println!("at {i}: {e} {:?}", e.kind());
                break;
            }
        }
    }
    let r = sess.client().query_one("select 1", &[]).await;
    println!("usable: {:?}", r.is_ok());
    drop(gs);
    drop(p2);
}
