//! Pins the attribute's default id exactly: this test binary's crate is named
//! `my_app`, so `send_invoices` in module `jobs` locks `my_app::jobs::send_invoices`,
//! whose key the key contract fixes at 5126864360601373363.

use pglock_tests::{bigint_lock_rows, connect, pid_of, pool, LockRow};

const PINNED_KEY: i64 = 5126864360601373363;

mod jobs {
    use super::*;

    /// The function whose default id is pinned.
    #[pglock::advisory(pool = pool)]
    pub async fn send_invoices(
        pool: &deadpool_postgres::Pool,
        observer: &tokio_postgres::Client,
    ) -> Result<Vec<LockRow>, pglock::Error> {
        Ok(bigint_lock_rows(observer, PINNED_KEY).await)
    }

    pub fn path() -> &'static str {
        module_path!()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_id_is_module_path_and_function_name() {
    assert_eq!(jobs::path(), "my_app::jobs");
    assert_eq!(
        pglock::key_for("my_app::jobs::send_invoices").unwrap(),
        PINNED_KEY
    );
    let pool = pool(2).await;
    let observer = connect().await;
    let during = jobs::send_invoices(&pool, &observer).await.unwrap();
    assert_eq!(
        during.len(),
        1,
        "the body runs under exactly one lock on the pinned key"
    );
    assert!(during[0].granted);
    assert_ne!(during[0].pid, pid_of(&observer).await);
    assert!(
        bigint_lock_rows(&observer, PINNED_KEY).await.is_empty(),
        "released on return"
    );
}
