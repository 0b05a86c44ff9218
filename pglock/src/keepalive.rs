//! Dead-peer settings for the connections locks are held on.

use std::time::Duration;

/// Client keepalive after this much silence, probes every
/// [`KEEPALIVE_INTERVAL`], and the server side is told the same.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_RETRIES: u32 = 3;

/// Gives a connection configuration pglock's dead-peer settings, so that a lock's
/// holder and the server each notice a vanished peer in bounded time:
///
/// - client side: TCP keepalives after 10 s idle, every 5 s, 3 probes, and
///   `tcp_user_timeout` 25 s (unacknowledged data);
/// - server side (startup options): `tcp_keepalives_idle=10`,
///   `tcp_keepalives_interval=5`, `tcp_keepalives_count=3`, `tcp_user_timeout=25000`.
///
/// With these, the server ends the session of a client that vanished (power loss,
/// network partition) — and so frees its advisory locks — within about
/// 10 + 5 × 3 = 25 seconds of the last traffic. Without them the operating
/// system's defaults apply (on Linux about two hours and eleven minutes).
///
/// Existing `options` are kept. [`Session::connect`](crate::Session::connect) applies
/// this; apply it to the `tokio_postgres::Config` of the pools you lock through.
pub fn configure_keepalives(config: &mut tokio_postgres::Config) {
    let user_timeout = KEEPALIVE_IDLE + KEEPALIVE_INTERVAL * KEEPALIVE_RETRIES;
    config
        .keepalives(true)
        .keepalives_idle(KEEPALIVE_IDLE)
        .keepalives_interval(KEEPALIVE_INTERVAL)
        .keepalives_retries(KEEPALIVE_RETRIES)
        .tcp_user_timeout(user_timeout);
    let server = format!(
        "-c tcp_keepalives_idle={} -c tcp_keepalives_interval={} -c tcp_keepalives_count={} \
         -c tcp_user_timeout={}",
        KEEPALIVE_IDLE.as_secs(),
        KEEPALIVE_INTERVAL.as_secs(),
        KEEPALIVE_RETRIES,
        user_timeout.as_millis()
    );
    let options = match config.get_options() {
        Some(existing) if !existing.is_empty() => format!("{existing} {server}"),
        _ => server,
    };
    config.options(options);
}

