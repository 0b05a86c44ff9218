//! A loopback TCP relay in front of the server that counts round trips: one each
//! time a client sends after the server last answered it. Pipelined statements
//! sent together count once. Used to count, never to time.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio_postgres::config::Host;
use tokio_postgres::Config;

/// A counting relay to one server, for connections made to [`Relay::config`].
pub struct Relay {
    config: Config,
    round_trips: Arc<AtomicU64>,
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
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if let Ok(server) = TcpStream::connect(&target).await {
                    tokio::spawn(relay(client, server, counter.clone()));
                }
            }
        });
        Some(Relay {
            config,
            round_trips,
        })
    }

    /// The connection configuration that goes through the relay.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Round trips counted so far, over every relayed connection.
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::SeqCst)
    }
}

async fn relay(client: TcpStream, server: TcpStream, round_trips: Arc<AtomicU64>) {
    let server_answered = AtomicBool::new(true);
    let (from_client, to_client) = client.into_split();
    let (from_server, to_server) = server.into_split();
    let up = pump(from_client, to_server, || {
        if server_answered.swap(false, Ordering::SeqCst) {
            round_trips.fetch_add(1, Ordering::SeqCst);
        }
    });
    let down = pump(from_server, to_client, || {
        server_answered.store(true, Ordering::SeqCst)
    });
    let _ = tokio::join!(up, down);
}

/// Copies bytes one way, calling `seen` before forwarding each read.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    seen: impl Fn(),
) -> std::io::Result<()> {
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        seen();
        to.write_all(&buf[..n]).await?;
    }
}
