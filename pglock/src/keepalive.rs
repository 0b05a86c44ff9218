//! Dead-peer settings for the connections locks are held on.

use std::time::Duration;

use crate::error::Error;

/// TCP keepalive settings, applied on both ends of a connection: after `idle`
/// without traffic, a probe every `interval`, and the connection is given up when
/// `retries` probes in a row go unanswered (or data stays unacknowledged for
/// `idle + interval × retries`, `tcp_user_timeout`).
///
/// The default, 10 s idle, 5 s interval, 3 retries, is what
/// [`configure_keepalives`] and [`Session::connect`](crate::Session::connect)
/// apply. The server cannot end the session of a client it no longer hears from
/// sooner than [`server_bound`](Keepalive::server_bound) after the last packet it
/// received from it; pglock's local deadline for plain locks counts on that (see
/// the crate docs, "Partitions").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Keepalive {
    idle: Duration,
    interval: Duration,
    retries: u32,
}

impl Default for Keepalive {
    fn default() -> Keepalive {
        Keepalive {
            idle: Duration::from_secs(10),
            interval: Duration::from_secs(5),
            retries: 3,
        }
    }
}

impl Keepalive {
    /// Keepalive settings of your own (shorter ones notice a dead peer sooner,
    /// at the price of more probes). PostgreSQL takes `idle` and `interval` in whole
    /// seconds.
    ///
    /// # Errors
    /// [`is_invalid_argument`](Error::is_invalid_argument) unless `idle` and
    /// `interval` are whole seconds between 1 s and one hour and `retries` is
    /// between 1 and 100.
    pub fn new(idle: Duration, interval: Duration, retries: u32) -> Result<Keepalive, Error> {
        let whole = |d: Duration| d.subsec_nanos() == 0 && (1..=3600).contains(&d.as_secs());
        if !whole(idle) || !whole(interval) || !(1..=100).contains(&retries) {
            return Err(Error::invalid_argument(format!(
                "keepalive idle {idle:?} and interval {interval:?} must be whole seconds \
                 between 1 s and 3600 s, and retries ({retries}) between 1 and 100"
            )));
        }
        Ok(Keepalive {
            idle,
            interval,
            retries,
        })
    }

    /// Silence before the first probe.
    pub fn idle(&self) -> Duration {
        self.idle
    }

    /// Time between probes.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Unanswered probes before the connection is given up.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// The least time, after the last packet it received from a client, that the
    /// server needs to give the connection up — and so to free its locks — when it
    /// hears nothing more: `idle + interval × retries` (25 s by default). Probes
    /// start after `idle` of silence and the connection is dropped after `retries`
    /// of them failed; data the server sent and the client never acknowledged is
    /// given up after `tcp_user_timeout`, set to the same value.
    pub fn server_bound(&self) -> Duration {
        self.idle + self.interval * self.retries
    }

    /// Gives a connection configuration these settings, on the client side
    /// (socket options) and on the server side (startup options
    /// `tcp_keepalives_idle`, `tcp_keepalives_interval`, `tcp_keepalives_count`,
    /// `tcp_user_timeout`). Existing `options` are kept.
    pub fn configure(&self, config: &mut tokio_postgres::Config) {
        self.configure_client(config);
        let user_timeout = self.server_bound();
        let server = format!(
            "-c tcp_keepalives_idle={} -c tcp_keepalives_interval={} -c tcp_keepalives_count={} \
             -c tcp_user_timeout={}",
            self.idle.as_secs(),
            self.interval.as_secs(),
            self.retries,
            user_timeout.as_millis()
        );
        let options = match config.get_options() {
            Some(existing) if !existing.is_empty() => format!("{existing} {server}"),
            _ => server,
        };
        config.options(options);
    }
}

impl Keepalive {
    /// The client side of [`configure`](Keepalive::configure) only (socket
    /// options): for connections through a proxy that refuses startup `options`.
    pub fn configure_client(&self, config: &mut tokio_postgres::Config) {
        config
            .keepalives(true)
            .keepalives_idle(self.idle)
            .keepalives_interval(self.interval)
            .keepalives_retries(self.retries)
            .tcp_user_timeout(self.server_bound());
    }

    /// The server side of [`configure`](Keepalive::configure) as `SET`
    /// statements, for a connection already made.
    pub(crate) fn server_sql(&self) -> String {
        format!(
            "SET tcp_keepalives_idle = {}; SET tcp_keepalives_interval = {}; \
             SET tcp_keepalives_count = {}; SET tcp_user_timeout = {}",
            self.idle.as_secs(),
            self.interval.as_secs(),
            self.retries,
            self.server_bound().as_millis()
        )
    }
}

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
/// the same settings (the server side with `SET` once connected); apply this to the
/// `tokio_postgres::Config` of the pools you lock through, and tell the locks so
/// with [`Advisory::keepalive`](crate::Advisory::keepalive) for them to get a local
/// deadline. Other settings: [`Keepalive::configure`]. Proxies such as PgBouncer
/// refuse startup `options` (`unsupported startup parameter`): behind one, set the
/// client side only ([`Keepalive::configure_client`]) and the server side's
/// keepalives on the server.
pub fn configure_keepalives(config: &mut tokio_postgres::Config) {
    Keepalive::default().configure(config);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_bound_and_validation() {
        assert_eq!(Keepalive::default().server_bound(), Duration::from_secs(25));
        let s = Duration::from_secs;
        assert_eq!(Keepalive::new(s(2), s(1), 2).unwrap().server_bound(), s(4));
        assert!(Keepalive::new(Duration::from_millis(1500), s(1), 2)
            .unwrap_err()
            .is_invalid_argument());
        assert!(Keepalive::new(s(0), s(1), 2)
            .unwrap_err()
            .is_invalid_argument());
        assert!(Keepalive::new(s(1), s(1), 0)
            .unwrap_err()
            .is_invalid_argument());
    }
}
