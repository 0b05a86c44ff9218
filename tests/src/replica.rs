//! [`Replica`]: a throwaway primary and a streaming hot standby of it, for the
//! tests of what happens on a standby and across a failover.

use std::process::Command;
use std::time::Duration;

use tokio_postgres::Client;

use super::{as_server_user, connect_to, eventually, free_port, is_root, pg_bindir, run, Cluster};

/// A primary cluster and a hot standby that streams from it (asynchronous
/// replication, as PostgreSQL does by default). Both are stopped when dropped.
pub struct Replica {
    /// The primary: `wal_level = replica`, replication allowed from 127.0.0.1.
    pub primary: Cluster,
    /// The standby, made by `pg_basebackup -R` (so it follows the primary).
    pub standby: Cluster,
}

impl Replica {
    /// Whether this machine has what [`start`](Replica::start) needs: the
    /// PostgreSQL server binaries, `pg_basebackup` among them.
    pub fn available() -> bool {
        pg_bindir().is_some_and(|bin| bin.join("pg_basebackup").exists())
    }

    /// Starts a primary, then a standby from a base backup of it, and waits until
    /// the standby streams.
    pub async fn start() -> Result<Replica, String> {
        let primary = Cluster::start_with_hba(
            &[("wal_level", "replica"), ("max_wal_senders", "4")],
            &["host replication postgres 127.0.0.1/32 trust"],
        )?;
        let port = free_port()?;
        let dir =
            std::env::temp_dir().join(format!("pglock-standby-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        if is_root() {
            run(Command::new("chown").arg("postgres:postgres").arg(&dir))?;
        }
        let data = dir.join("data");
        // Once the standby is a `Cluster`, dropping it stops it and removes `dir`;
        // until then a failure removes `dir` here.
        let backup = run(as_server_user(
            Command::new(primary.bindir.join("pg_basebackup"))
                .arg("-D")
                .arg(&data)
                .args(["-h", "127.0.0.1", "-U", "postgres", "-R", "-X", "stream"])
                .args(["-p", &primary.port.to_string(), "--no-sync"]),
        )?);
        if let Err(e) = backup {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        // The backup carries the primary's settings; the standby listens elsewhere.
        let conf_path = data.join("postgresql.auto.conf");
        let mut conf = std::fs::read_to_string(&conf_path).unwrap_or_default();
        conf.push_str(&format!(
            "port = {port}\nunix_socket_directories = '{}'\nhot_standby = on\n",
            dir.display()
        ));
        let standby = Cluster {
            dir,
            bindir: primary.bindir.clone(),
            port,
        };
        std::fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
        standby.pg_ctl(&["start", "-w", "-t", "60"])?;
        let replica = Replica { primary, standby };
        let observer = connect_to(&replica.primary.url()).await;
        let streaming = eventually(Duration::from_secs(20), || async {
            observer
                .query_one(
                    "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
                    &[],
                )
                .await
                .map(|r| r.get::<_, i64>(0) == 1)
                .unwrap_or(false)
        })
        .await;
        if !streaming {
            return Err("the standby did not start streaming within 20 s".into());
        }
        Ok(replica)
    }

    /// A URL listing both servers, standby first, that only accepts a server
    /// taking writes (`target_session_attrs=read-write`): whichever is the
    /// primary.
    pub fn multi_host_url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/postgres?target_session_attrs=read-write",
            self.standby.port(),
            self.primary.port()
        )
    }

    /// Waits until the standby has replayed everything the primary has written so
    /// far; answers whether it did within 10 s.
    pub async fn caught_up(&self) -> bool {
        let primary = connect_to(&self.primary.url()).await;
        let standby = connect_to(&self.standby.url()).await;
        let lsn: String = primary
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await
            .expect("primary LSN")
            .get(0);
        eventually(Duration::from_secs(10), || async {
            standby
                .query_one(
                    "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
                    &[&lsn],
                )
                .await
                .map(|r| r.get::<_, bool>(0))
                .unwrap_or(false)
        })
        .await
    }

    /// Starts the standby again after [`Cluster::stop`].
    pub fn start_standby(&self) -> Result<(), String> {
        self.standby.pg_ctl(&["start", "-w", "-t", "60"])
    }

    /// Asks the standby to promote itself (`pg_ctl promote`), without waiting
    /// until it takes writes.
    pub fn promote(&self) -> Result<(), String> {
        self.standby.pg_ctl(&["promote", "-W"])
    }
}

/// Whether the server `client` is connected to is in recovery (a standby).
pub async fn in_recovery(client: &Client) -> bool {
    client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .expect("pg_is_in_recovery")
        .get(0)
}
