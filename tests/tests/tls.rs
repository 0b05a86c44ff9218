//! TLS (feature `tls`) against a throwaway cluster with `ssl = on` and a
//! certificate made here (rcgen): each libpq `sslmode` means what libpq says,
//! verify-full succeeds with the right root and host and fails, saying why, with
//! a wrong root or a host the certificate does not name; `pglock::pool` and
//! `Session::connect_tls` use it.

use pglock::tls::{RootCerts, SslMode, TlsOptions};
use pglock_tests::{unique_name, Cluster, TlsCerts};

/// A key=value connection string to the cluster: TLS name `host`, address
/// 127.0.0.1.
fn conninfo(cluster: &Cluster, host: &str, tls: &str) -> String {
    format!(
        "host={host} hostaddr=127.0.0.1 port={} user=postgres dbname=postgres {tls}",
        cluster.port()
    )
}

/// An error and every cause, as one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Whether the session's connection is encrypted, asked of the server.
async fn uses_tls(session: &pglock::Session) -> bool {
    session
        .client()
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn sslmodes_against_a_tls_server() {
    let certs = TlsCerts::make();
    let cluster = certs.cluster();
    let ca = certs.path("ca.pem");
    let wrong = certs.path("wrong-ca.pem");
    let connect = |host: &str, tls: String| {
        let info = conninfo(&cluster, host, &tls);
        async move { pglock::Session::connect_tls(&info).await }
    };

    // verify-full: right root, right name.
    let ok = connect("localhost", format!("sslmode=verify-full sslrootcert={ca}"))
        .await
        .expect("verify-full with the right root and host");
    assert!(uses_tls(&ok).await);

    // verify-full: wrong root.
    let err = connect(
        "localhost",
        format!("sslmode=verify-full sslrootcert={wrong}"),
    )
    .await
    .map(|_| ())
    .unwrap_err();
    let why = chain(&err);
    assert!(why.contains("invalid peer certificate"), "{why}");
    assert!(why.contains("UnknownIssuer"), "{why}");

    // verify-full: the certificate does not name 127.0.0.1.
    let err = connect("127.0.0.1", format!("sslmode=verify-full sslrootcert={ca}"))
        .await
        .map(|_| ())
        .unwrap_err();
    let why = chain(&err);
    assert!(why.contains("invalid peer certificate"), "{why}");
    assert!(why.contains("not valid for name"), "{why}");

    // verify-ca checks the chain but not the name.
    let ca_only = connect("127.0.0.1", format!("sslmode=verify-ca sslrootcert={ca}"))
        .await
        .expect("verify-ca ignores the host name");
    assert!(uses_tls(&ca_only).await);
    let err = connect(
        "127.0.0.1",
        format!("sslmode=verify-ca sslrootcert={wrong}"),
    )
    .await
    .map(|_| ())
    .unwrap_err();
    assert!(chain(&err).contains("UnknownIssuer"), "{}", chain(&err));

    // require: encrypted, unverified — unless a root file is given (libpq: then
    // as verify-ca).
    let require = connect("127.0.0.1", "sslmode=require".to_string())
        .await
        .unwrap();
    assert!(uses_tls(&require).await);
    assert!(
        connect("127.0.0.1", format!("sslmode=require sslrootcert={wrong}"))
            .await
            .is_err(),
        "require with a root file verifies the chain"
    );

    // prefer uses TLS when offered; disable never does.
    let prefer = connect("127.0.0.1", "sslmode=prefer".to_string())
        .await
        .unwrap();
    assert!(uses_tls(&prefer).await);
    let plain = connect("127.0.0.1", "sslmode=disable".to_string())
        .await
        .unwrap();
    assert!(!uses_tls(&plain).await);

    // A missing root file is a typed error before any connection.
    let err = connect(
        "localhost",
        "sslmode=verify-full sslrootcert=/nonexistent/ca.pem".to_string(),
    )
    .await
    .map(|_| ())
    .unwrap_err();
    assert!(err.is_invalid_argument(), "{err}");

    // The pool helper: verify-full, then a lock through it, seen on the server.
    let url = format!(
        "postgres://postgres@localhost:{}/postgres?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={}",
        cluster.port(),
        ca.replace('/', "%2F")
    );
    let pool = pglock::pool(&url, 2).unwrap();
    let name = unique_name("tls-pool");
    let guard = pglock::advisory(name.as_str())
        .acquire(&pool)
        .await
        .unwrap();
    let tls: bool = guard
        .client()
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(tls);
    let status = pglock::status(plain.client(), name.as_str()).await.unwrap();
    assert_eq!(status.holders.len(), 1);
    guard.release().await.unwrap();
    let bad = pglock::pool(&url.replace("ca.pem", "wrong-ca.pem"), 1).unwrap();
    let err = pglock::advisory(name.as_str())
        .acquire(&bad)
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(err.is_pool(), "{err}");
    assert!(chain(&err).contains("UnknownIssuer"), "{}", chain(&err));

    // Options built in code mean the same.
    let mut config: tokio_postgres::Config = conninfo(&cluster, "localhost", "").parse().unwrap();
    pglock::configure_keepalives(&mut config);
    let client = TlsOptions::new(SslMode::VerifyFull)
        .root_certs(RootCerts::File(ca.clone().into()))
        .connect(&config)
        .await
        .unwrap();
    client.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test]
async fn pool_without_tls_in_the_url_still_connects() {
    // The shared test server (no TLS needed): prefer falls back to plain.
    let url = pglock_tests::database_url().await;
    let pool = pglock::pool(&url, 1).unwrap();
    let name = unique_name("pool-plain");
    let guard = pglock::advisory(name.as_str())
        .acquire(&pool)
        .await
        .unwrap();
    let observer = pglock_tests::connect().await;
    assert_eq!(pglock_tests::lock_rows(&observer, &name).await.len(), 1);
    guard.release().await.unwrap();
    assert!(pglock::pool("postgres://h/db?sslmode=nonsense", 1)
        .unwrap_err()
        .is_invalid_argument());
}
