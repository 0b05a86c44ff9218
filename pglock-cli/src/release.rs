//! `pglock release --terminate PID --yes`: end a stuck holder's session.

use clap::Args;

use crate::{conn, EXIT_DB};

/// `pglock release`'s arguments.
#[derive(Args, Debug)]
pub(crate) struct ReleaseArgs {
    /// End the session of this backend pid (pg_terminate_backend): every lock it
    /// holds is freed, and its client sees its connection closed.
    #[arg(long, value_name = "PID", required = true)]
    terminate: i32,
    /// Really do it; without --yes pglock only says what it would do.
    #[arg(long)]
    yes: bool,
}

/// Returns the exit status: 0 terminated, 1 refused (no --yes) or no such
/// backend, 3 database error.
pub(crate) async fn release(url: Option<&str>, args: ReleaseArgs) -> u8 {
    let Some(client) = conn::connect(url).await else {
        return EXIT_DB;
    };
    let pid = args.terminate;
    let found = client
        .query_opt(
            "SELECT a.application_name, pg_catalog.host(a.client_addr), a.usename::text, \
                    (SELECT pg_catalog.count(*) FROM pg_catalog.pg_locks l \
                      WHERE l.pid = a.pid AND l.locktype = 'advisory' AND l.granted), \
                    a.pid = pg_catalog.pg_backend_pid() \
             FROM pg_catalog.pg_stat_activity a WHERE a.pid = $1",
            &[&pid],
        )
        .await;
    let row = match found {
        Ok(Some(row)) => row,
        Ok(None) => {
            eprintln!("pglock: no backend with pid {pid} on this server");
            return 1;
        }
        Err(e) => {
            eprintln!("pglock: looking up pid {pid} failed: {e}");
            return EXIT_DB;
        }
    };
    let app: Option<String> = row.get(0);
    let addr: Option<String> = row.get(1);
    let user: Option<String> = row.get(2);
    let locks: i64 = row.get(3);
    let is_self: bool = row.get(4);
    if is_self {
        eprintln!("pglock: pid {pid} is pglock's own session");
        return 1;
    }
    let what = format!(
        "backend {pid} (user {}, application {:?}, client {}), which holds {locks} advisory \
         lock(s)",
        user.as_deref().unwrap_or("?"),
        app.as_deref().unwrap_or(""),
        addr.as_deref().unwrap_or("local"),
    );
    if !args.yes {
        eprintln!(
            "pglock: would terminate {what} with pg_catalog.pg_terminate_backend({pid}); its \
             client loses its connection and every lock of that session. Add --yes to do it."
        );
        return 1;
    }
    match client
        .query_one("SELECT pg_catalog.pg_terminate_backend($1)", &[&pid])
        .await
    {
        Ok(row) if row.get::<_, bool>(0) => {
            out!("terminated {what}");
            0
        }
        Ok(_) => {
            eprintln!("pglock: the server did not terminate {what} (it may have just ended)");
            1
        }
        Err(e) => {
            eprintln!("pglock: pg_terminate_backend({pid}) failed: {e}");
            EXIT_DB
        }
    }
}
