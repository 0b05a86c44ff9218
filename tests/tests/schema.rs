//! Schema-proof SQL: pglock calls `pg_catalog.pg_advisory_lock`, not whatever
//! `search_path` finds first, and its fencing table has one fixed place.

use pglock_tests::{connect, database_url, Fixture};

/// A session whose `search_path` puts `schema` before `pg_catalog`.
async fn session_with_path(path: &str) -> pglock::Session {
    let mut config: tokio_postgres::Config = database_url().await.parse().unwrap();
    config.options(format!("-c search_path={path}"));
    let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    pglock::Session::new(client)
}

#[tokio::test]
async fn shadowing_functions_do_not_fool_it() {
    let fx = Fixture::new("schema-evil").await;
    let owner = connect().await;
    let schema = format!("pglock_evil_{}", std::process::id());
    owner
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};
             CREATE FUNCTION {schema}.pg_advisory_lock(bigint) RETURNS void LANGUAGE sql AS 'SELECT';
             CREATE FUNCTION {schema}.pg_try_advisory_lock(bigint) RETURNS bool LANGUAGE sql AS 'SELECT true';
             CREATE FUNCTION {schema}.pg_advisory_unlock(bigint) RETURNS bool LANGUAGE sql AS 'SELECT true';
             CREATE FUNCTION {schema}.pg_backend_pid() RETURNS int LANGUAGE sql AS 'SELECT 0';"
        ))
        .await
        .unwrap();
    let path = format!("{schema},pg_catalog");
    let (a, b) = (
        session_with_path(&path).await,
        session_with_path(&path).await,
    );
    let first = pglock::advisory(fx.name.as_str())
        .acquire(&a)
        .await
        .unwrap();
    assert_eq!(fx.holders().await.len(), 1, "the real lock is held");
    assert!(
        pglock::advisory(fx.name.as_str())
            .try_acquire(&b)
            .await
            .unwrap()
            .is_none(),
        "a second session got the lock through the shadowing functions"
    );
    first.release().await.unwrap();
    assert!(fx.until_free().await);
    owner
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

#[tokio::test]
async fn fencing_tokens_have_one_sequence_whatever_the_search_path() {
    let fx = Fixture::new("schema-fencing").await;
    let owner = connect().await;
    pglock::install_fencing(&owner).await.unwrap();
    let schema = format!("pglock_svc_{}", std::process::id());
    // A second service whose search path finds a table of the same name first.
    owner
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};
             CREATE TABLE {schema}.pglock_fencing (LIKE public.pglock_fencing INCLUDING ALL);"
        ))
        .await
        .unwrap();
    let a = session_with_path("public").await;
    let b = session_with_path(&format!("{schema},public")).await;
    let mut tokens = Vec::new();
    for session in [&a, &b, &a, &b] {
        let guard = pglock::advisory(fx.name.as_str())
            .fencing()
            .acquire(session)
            .await
            .unwrap();
        tokens.push(guard.fencing_token().unwrap());
        guard.release().await.unwrap();
    }
    assert!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "tokens must strictly increase: {tokens:?}"
    );
    owner
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}
