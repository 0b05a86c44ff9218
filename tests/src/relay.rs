//! A loopback TCP relay in front of the server that counts round trips: one each
//! time a client sends after the server last answered it. Pipelined statements
//! sent together count once. Used to count, never to time — or, given a delay,
//! to stand in for a slow link: every byte reaches the other side that much
//! later, each way.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_postgres::config::Host;
use tokio_postgres::Config;

/// A counting relay to one server, for connections made to [`Relay::config`].
pub struct Relay {
    config: Config,
    round_trips: Arc<AtomicU64>,
    delay_ms: Arc<AtomicU64>,
}

impl Relay {
    /// Starts relaying to the server of `upstream`; `None` when that server is not
    /// reached over TCP (a Unix socket).
    pub async fn start(upstream: &Config) -> Option<Relay> {
        let Some(Host::Tcp(host)) = upstream.get_hosts().first() else {
            return None;
        };
        let target = format!(
            "{host}:{}",
            upstream.get_ports().first().copied().unwrap_or(5432)
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.ok()?;
        // A fresh configuration: `host`/`port` on a copy would add to its lists.
        let mut config = Config::new();
        config
            .host("127.0.0.1")
            .port(listener.local_addr().ok()?.port());
        config.application_name(upstream.get_application_name().unwrap_or("pglock-tests"));
        if let Some(user) = upstream.get_user() {
            config.user(user);
        }
        if let Some(password) = upstream.get_password() {
            config.password(password);
        }
        if let Some(dbname) = upstream.get_dbname() {
            config.dbname(dbname);
        }
        let round_trips = Arc::new(AtomicU64::new(0));
        let counter = round_trips.clone();
        let delay_ms = Arc::new(AtomicU64::new(0));
        let delay = delay_ms.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if let Ok(server) = TcpStream::connect(&target).await {
                    tokio::spawn(relay(client, server, counter.clone(), delay.clone()));
                }
            }
        });
        Some(Relay {
            config,
            round_trips,
            delay_ms,
        })
    }

    /// The connection configuration that goes through the relay.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// From now on, everything relayed (each way, on every connection) reaches
    /// the other side `delay` after it arrived; order and content are kept.
    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Round trips counted so far, over every relayed connection.
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::SeqCst)
    }
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    round_trips: Arc<AtomicU64>,
    delay_ms: Arc<AtomicU64>,
) {
    let server_answered = AtomicBool::new(true);
    let (from_client, to_client) = client.into_split();
    let (from_server, to_server) = server.into_split();
    let up = pump(from_client, to_server, &delay_ms, || {
        if server_answered.swap(false, Ordering::SeqCst) {
            round_trips.fetch_add(1, Ordering::SeqCst);
        }
    });
    let down = pump(from_server, to_client, &delay_ms, || {
        server_answered.store(true, Ordering::SeqCst)
    });
    let _ = tokio::join!(up, down);
}

/// Copies bytes one way, calling `seen` before forwarding each read, each read
/// the current delay after it arrived.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    delay_ms: &AtomicU64,
    seen: impl Fn(),
) -> std::io::Result<()> {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let write = async move {
        while let Some((due, bytes)) = rx.recv().await {
            tokio::time::sleep_until(due.into()).await;
            to.write_all(&bytes).await?;
        }
        Ok::<(), std::io::Error>(())
    };
    let read = async move {
        let mut buf = vec![0; 64 * 1024];
        loop {
            let n = from.read(&mut buf).await?;
            if n == 0 {
                return Ok::<(), std::io::Error>(());
            }
            seen();
            let delay = Duration::from_millis(delay_ms.load(Ordering::SeqCst));
            if tx
                .send((Instant::now() + delay, buf[..n].to_vec()))
                .is_err()
            {
                return Ok(());
            }
        }
    };
    let (read, write) = tokio::join!(read, write);
    read.and(write)
}
