//! Helpers shared by the examples: where the database is and how to reach it.

use std::time::Duration;

/// The URL the examples use: `DATABASE_URL`, or the default that fits both a local
/// server with trust authentication and `docker compose up -d`.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@localhost:5432/postgres".to_string())
}

/// A small deadpool pool for [`database_url`], labelled with `application_name`
/// so that `pg_stat_activity` (and `pglock::status`) show who holds what.
pub fn pool(application_name: &str, max_size: usize) -> deadpool_postgres::Pool {
    let url = database_url();
    let mut config: tokio_postgres::Config = url.parse().expect("DATABASE_URL is not a valid URL");
    config.application_name(application_name);
    config.connect_timeout(Duration::from_secs(5));
    let manager = deadpool_postgres::Manager::from_config(
        config,
        tokio_postgres::NoTls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    deadpool_postgres::Pool::builder(manager)
        .max_size(max_size)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .expect("pool")
}

/// Fails early, in plain words, when no server answers.
pub async fn check_server(pool: &deadpool_postgres::Pool) {
    if let Err(e) = pool.get().await {
        eprintln!(
            "Cannot reach PostgreSQL at {}: {e}\n\
             Start one (`docker compose up -d` in the repository, or a local server) or set \
             DATABASE_URL.",
            database_url()
        );
        std::process::exit(1);
    }
}
