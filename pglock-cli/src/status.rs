//! `pglock status [NAME…] [--json]`: every advisory lock in the database, its
//! holders and waiters, and who blocks whom.

use std::collections::HashMap;

use clap::Args;
use pglock::LockKey;
use serde_json::{json, Value};
use tokio_postgres::Row;

use crate::keys;
use crate::{conn, SchemeArgs, EXIT_DB};

/// `pglock status`'s arguments.
#[derive(Args, Debug)]
pub(crate) struct StatusArgs {
    /// Only these locks (their keys under --scheme); the output then shows their names.
    names: Vec<String>,
    /// JSON for programs instead of a table.
    #[arg(long)]
    json: bool,
    /// Only locks whose name (as the name registry knows it) is in this directory:
    /// a prefix up to a separator (`billing` matches `billing/x`, `billing.x`).
    #[arg(long = "dir", value_name = "DIRECTORY")]
    dir: Option<String>,
    #[command(flatten)]
    scheme: SchemeArgs,
}

/// One session holding or waiting for an advisory lock.
#[derive(Debug)]
struct Entry {
    key: LockKey,
    mode: String,
    granted: bool,
    pid: i32,
    application_name: Option<String>,
    client_addr: Option<String>,
    user: Option<String>,
    backend_start: Option<String>,
    state: Option<String>,
    waiting_since: Option<String>,
    blocked_by: Vec<i32>,
}

/// Every advisory lock row of the current database, holders first, waiters in
/// the order they started waiting. `waitstart` exists from PostgreSQL 14.
fn query(server_version: i32) -> String {
    let wait_start = if server_version >= 140000 {
        "l.waitstart"
    } else {
        "NULL::timestamptz"
    };
    format!(
        "SELECT l.classid::int8, l.objid::int8, l.objsubid::int4, l.mode, l.granted, l.pid, \
                a.application_name, pg_catalog.host(a.client_addr), a.usename::text, \
                pg_catalog.to_char(a.backend_start AT TIME ZONE 'UTC', \
                                   'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), \
                a.state, \
                pg_catalog.to_char({wait_start} AT TIME ZONE 'UTC', \
                                   'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), \
                CASE WHEN l.granted THEN '{{}}'::int4[] \
                     ELSE pg_catalog.pg_blocking_pids(l.pid) END \
         FROM pg_catalog.pg_locks l \
         LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' \
           AND l.database = (SELECT oid FROM pg_catalog.pg_database \
                             WHERE datname = pg_catalog.current_database()) \
         ORDER BY l.objsubid, l.classid, l.objid, l.granted DESC, {wait_start} NULLS FIRST, l.pid"
    )
}

fn entry(row: &Row) -> Entry {
    let classid: i64 = row.get(0);
    let objid: i64 = row.get(1);
    let objsubid: i32 = row.get(2);
    let key = if objsubid == 2 {
        LockKey::Pair(classid as u32 as i32, objid as u32 as i32)
    } else {
        LockKey::Big(((classid as u64) << 32 | objid as u64) as i64)
    };
    Entry {
        key,
        mode: row.get(3),
        granted: row.get(4),
        pid: row.get(5),
        application_name: row.get(6),
        client_addr: row.get(7),
        user: row.get(8),
        backend_start: row.get(9),
        state: row.get(10),
        waiting_since: row.get(11),
        blocked_by: row.get(12),
    }
}

/// `pglock status`: returns the exit status.
pub(crate) async fn status(url: Option<&str>, args: StatusArgs) -> u8 {
    let mut names: HashMap<LockKey, String> = HashMap::new();
    for name in &args.names {
        match keys::key_of(name, &args.scheme) {
            Ok(key) => {
                names.insert(key, name.clone());
            }
            Err(e) => {
                eprintln!("pglock: {name:?}: {e}");
                return 2;
            }
        }
    }
    let Some(client) = conn::connect(url).await else {
        return EXIT_DB;
    };
    let rows = async {
        let version: i32 = client
            .query_one(
                "SELECT pg_catalog.current_setting('server_version_num')::int4",
                &[],
            )
            .await?
            .get(0);
        client.query(&query(version), &[]).await
    }
    .await;
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => {
            eprintln!("pglock: reading pg_locks failed: {e}");
            return EXIT_DB;
        }
    };
    // Names the server's registry knows (`pglock::install_registry`), for keys
    // not named on the command line; none when no registry is installed.
    let wanted: Vec<LockKey> = names.keys().copied().collect();
    if let Ok(listed) = pglock::locks(&client, &pglock::LockFilter::all()).await {
        for lock in listed {
            if let Some(name) = lock.name {
                names.entry(lock.key).or_insert(name);
            }
        }
    }
    let directory = args.dir.as_deref().map(pglock::LockFilter::directory);
    // Grouped by key, in the server's order.
    let mut locks: Vec<(LockKey, Vec<Entry>)> = Vec::new();
    for entry in rows.iter().map(entry) {
        if !wanted.is_empty() && !wanted.contains(&entry.key) {
            continue;
        }
        if let Some(directory) = &directory {
            if !directory.matches(names.get(&entry.key).map(String::as_str)) {
                continue;
            }
        }
        match locks.last_mut() {
            Some((key, entries)) if *key == entry.key => entries.push(entry),
            _ => locks.push((entry.key, vec![entry])),
        }
    }
    if args.json {
        out!("{}", to_json(&locks, &names));
    } else {
        print_table(&locks, &names);
    }
    0
}

fn key_json(key: LockKey) -> Value {
    let (classid, objid, objsubid) = key.pg_locks_triple();
    match key {
        LockKey::Big(k) => json!({
            "type": "bigint", "key": k,
            "classid": classid, "objid": objid, "objsubid": objsubid,
        }),
        LockKey::Pair(a, b) => json!({
            "type": "pair", "key": [a, b],
            "classid": classid, "objid": objid, "objsubid": objsubid,
        }),
    }
}

fn session_json(e: &Entry) -> Value {
    json!({
        "pid": e.pid,
        "mode": if e.mode == "ShareLock" { "shared" } else { "exclusive" },
        "application_name": e.application_name,
        "client_addr": e.client_addr,
        "user": e.user,
        "backend_start": e.backend_start,
        "state": e.state,
        "waiting_since": e.waiting_since,
        "blocked_by": e.blocked_by,
    })
}

fn to_json(locks: &[(LockKey, Vec<Entry>)], names: &HashMap<LockKey, String>) -> Value {
    let locks: Vec<Value> = locks
        .iter()
        .map(|(key, entries)| {
            let mut lock = key_json(*key);
            lock["name"] = json!(names.get(key));
            lock["holders"] = entries
                .iter()
                .filter(|e| e.granted)
                .map(session_json)
                .collect();
            lock["waiters"] = entries
                .iter()
                .filter(|e| !e.granted)
                .map(session_json)
                .collect();
            lock
        })
        .collect();
    json!({ "locks": locks })
}

fn print_table(locks: &[(LockKey, Vec<Entry>)], names: &HashMap<LockKey, String>) {
    if locks.is_empty() {
        out!("no advisory locks held or awaited");
        return;
    }
    let header = [
        "KEY",
        "NAME",
        "STATE",
        "MODE",
        "PID",
        "APPLICATION",
        "CLIENT",
        "SESSION START (UTC)",
        "WAITING SINCE (UTC)",
        "BLOCKED BY",
    ];
    let mut rows: Vec<[String; 10]> = Vec::new();
    for (key, entries) in locks {
        for e in entries {
            let dash = || "-".to_string();
            rows.push([
                key.to_string(),
                names.get(key).cloned().unwrap_or_else(dash),
                if e.granted { "holds" } else { "waits" }.to_string(),
                if e.mode == "ShareLock" {
                    "shared"
                } else {
                    "exclusive"
                }
                .to_string(),
                e.pid.to_string(),
                e.application_name
                    .clone()
                    .filter(|a| !a.is_empty())
                    .unwrap_or_else(dash),
                e.client_addr.clone().unwrap_or_else(dash),
                e.backend_start.clone().unwrap_or_else(dash),
                e.waiting_since.clone().unwrap_or_else(dash),
                if e.blocked_by.is_empty() {
                    dash()
                } else {
                    e.blocked_by
                        .iter()
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                },
            ]);
        }
    }
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out!("{}", parts.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
}
