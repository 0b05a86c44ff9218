//! `pglock`: PostgreSQL advisory locks from the command line.
//!
//! - `pglock run NAME -- CMD ARGS…` runs a command while holding a lock, like
//!   flock(1) for every machine that shares the database;
//! - `pglock status [NAME…] [--json]` lists advisory locks, holders and waiters;
//! - `pglock key NAME [--scheme …]` prints a name's key and how `pg_locks` shows it;
//! - `pglock release --terminate PID --yes` ends a stuck holder's session.
//!
//! Connection settings: `--url`, else `DATABASE_URL`, else libpq's `PG*`
//! variables. Exit codes are listed in `pglock --help`.

/// `println!` for results: when stdout is a closed pipe (`pglock status | head`)
/// pglock ends quietly with status 141, as a process killed by SIGPIPE would.
macro_rules! out {
    ($($arg:tt)*) => { $crate::write_out(format_args!($($arg)*)) };
}

mod conn;
mod keys;
mod release;
mod run;
mod status;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Exit status for errors talking to the database (connecting, a failed query).
pub(crate) const EXIT_DB: u8 = 3;
/// Exit status when the lock was lost while the command ran.
pub(crate) const EXIT_LOST: u8 = 4;

/// PostgreSQL advisory locks from the command line.
#[derive(Parser, Debug)]
#[command(
    name = "pglock",
    version,
    about = "PostgreSQL advisory locks from the command line: flock(1) for a fleet",
    after_help = "Connection: --url, else DATABASE_URL, else the libpq variables PGHOST, PGPORT, \
                  PGUSER, PGPASSWORD, PGDATABASE, PGAPPNAME, PGSSLMODE (libpq's meaning: disable, \
                  prefer (default), require, verify-ca, verify-full), PGSSLROOTCERT (a PEM file, \
                  or system).\n\n\
                  Exit status: 0 success (run: the command's status); 1 lock busy (run: see -E), \
                  refused or not found; 2 usage error or invalid lock name; 3 database or connection error; 4 the lock \
                  was lost while the command ran; 126/127 the command could not be run; 128+N the \
                  command (or pglock while waiting) was ended by signal N (141: stdout was a closed \
                  pipe)."
)]
struct Cli {
    /// Connection URL or libpq key=value string (default: DATABASE_URL, else PG* variables).
    #[arg(long, global = true, value_name = "URL")]
    url: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a command while holding a lock (like flock(1), for every machine on the database).
    Run(run::RunArgs),
    /// List advisory locks: holders, waiters and who blocks whom.
    Status(status::StatusArgs),
    /// Print the key of a lock name and how pg_locks shows it.
    Key(KeyArgs),
    /// End a stuck holder's session (pg_terminate_backend).
    Release(release::ReleaseArgs),
}

/// How a lock name becomes a key: pglock's scheme or another library's.
#[derive(Args, Debug, Clone)]
pub(crate) struct SchemeArgs {
    /// Key scheme: pglock (default), or another library's, to lock what it locks.
    #[arg(long, value_enum, default_value_t = keys::Scheme::Pglock)]
    scheme: keys::Scheme,
    /// distributed-lock: hash names it cannot encode otherwise (its allowHashing).
    #[arg(long)]
    allow_hashing: bool,
    /// with-advisory-lock: the gem's WITH_ADVISORY_LOCK_PREFIX, as an integer.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    prefix: i64,
}

#[derive(Args, Debug)]
struct KeyArgs {
    /// The lock name.
    name: String,
    #[command(flatten)]
    scheme: SchemeArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("pglock: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_DB);
        }
    };
    let url = cli.url;
    let code = runtime.block_on(async move {
        match cli.command {
            Command::Run(args) => run::run(url.as_deref(), args).await,
            Command::Status(args) => status::status(url.as_deref(), args).await,
            Command::Key(args) => keys::print_key(&args.name, &args.scheme),
            Command::Release(args) => release::release(url.as_deref(), args).await,
        }
    });
    // Tasks still running (a lease renewer, the connection) end with the runtime.
    runtime.shutdown_timeout(Duration::from_millis(100));
    ExitCode::from(code)
}

/// Writes one line of results to stdout (see `out!`).
pub(crate) fn write_out(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_fmt(args)
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush());
    if let Err(e) = written {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
        eprintln!("pglock: cannot write the output: {e}");
        std::process::exit(1);
    }
}

/// Parses a duration: a number of seconds (`1.5`) or a number with a unit
/// (`250ms`, `30s`, `5m`, `1h`).
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (try 10, 1.5, 250ms, 30s, 5m, 1h)"))?;
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => return Err(format!("unknown unit {other:?} (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(value * scale).map_err(|e| format!("{text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn cli_definition_is_valid() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
