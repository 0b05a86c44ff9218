//! `pglock run NAME -- CMD ARGS…`: flock(1) for a fleet.

use std::ffi::OsString;
use std::future::pending;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use clap::Args;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use pglock::LockId;
use tokio::signal::unix::{signal, SignalKind};
use tokio::time::{sleep_until, Instant};

use crate::keys::{self, Scheme};
use crate::{conn, parse_duration, SchemeArgs, EXIT_DB, EXIT_LOST};

/// `pglock run`'s arguments.
#[derive(Args, Debug)]
pub(crate) struct RunArgs {
    /// The lock name.
    name: String,
    /// Do not wait: if the lock is busy, exit at once (with -E's code).
    #[arg(short = 'n', long = "nonblock", conflicts_with = "wait")]
    nonblock: bool,
    /// Wait at most this long for the lock (seconds, or 250ms, 30s, 5m); default:
    /// wait as long as it takes.
    #[arg(short = 'w', long = "wait", alias = "timeout", value_name = "SECONDS", value_parser = parse_duration)]
    wait: Option<Duration>,
    /// Take the lock in shared mode (any number of shared holders, no exclusive one).
    #[arg(short = 's', long)]
    shared: bool,
    /// Hold the lock with a lease: if pglock hangs for TTL, the server frees the lock
    /// (PostgreSQL 14+). pglock renews it while it runs.
    #[arg(long, value_name = "TTL", value_parser = parse_duration)]
    lease: Option<Duration>,
    /// Show LABEL as the holder's application_name while the lock is held.
    #[arg(long, value_name = "LABEL")]
    label: Option<String>,
    /// Exit status when the lock is busy (after -n, or when -w runs out).
    #[arg(
        short = 'E',
        long = "conflict-exit-code",
        value_name = "CODE",
        default_value_t = 1
    )]
    conflict_exit_code: u8,
    /// If the lock is lost while the command runs, pglock sends it SIGTERM and, this
    /// long after, SIGKILL.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_duration)]
    grace: Duration,
    /// Print nothing when the lock is busy.
    #[arg(short = 'q', long)]
    quiet: bool,
    #[command(flatten)]
    scheme: SchemeArgs,
    /// The command to run while holding the lock, and its arguments (after `--`).
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<OsString>,
}

/// Runs the command under the lock; returns pglock's exit status.
pub(crate) async fn run(url: Option<&str>, args: RunArgs) -> u8 {
    let key = match keys::key_of(&args.name, &args.scheme) {
        Ok(key) => key,
        Err(e) => {
            eprintln!("pglock: {e}");
            return 2;
        }
    };
    let id = if args.scheme.scheme == Scheme::Pglock {
        LockId::name(args.name.as_str())
    } else {
        LockId::key(key)
    };
    let settings = match conn::settings(url) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("pglock: {e}");
            return EXIT_DB;
        }
    };
    let (mut sigint, mut sigterm) = match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(i), Ok(t)) => (i, t),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("pglock: cannot handle signals: {e}");
            return EXIT_DB;
        }
    };
    // A pool of one connection: leases and labels are per-session settings, which
    // pglock applies to a connection of the lock's own.
    let pool = match settings.pool(1).await {
        Ok(pool) => pool,
        Err(e) => {
            eprintln!("pglock: {e}");
            return EXIT_DB;
        }
    };

    let mut lock = pglock::advisory(id);
    if args.shared {
        lock = lock.shared();
    }
    if args.nonblock {
        lock = lock.timeout(Duration::ZERO);
    } else if let Some(wait) = args.wait {
        lock = lock.timeout(wait);
    }
    if let Some(ttl) = args.lease {
        lock = lock.lease(ttl).auto_renew();
    }
    if let Some(label) = &args.label {
        lock = lock.label(label.as_str());
    }

    // Interrupted while waiting: nothing ran; the wait ends with the connection.
    let acquired = tokio::select! {
        acquired = lock.acquire(&pool) => acquired,
        _ = sigint.recv() => return 128 + Signal::SIGINT as u8,
        _ = sigterm.recv() => return 128 + Signal::SIGTERM as u8,
    };
    let guard = match acquired {
        Ok(guard) => guard,
        Err(e) if e.is_not_acquired() => {
            if !args.quiet {
                eprintln!("pglock: {e}");
            }
            return args.conflict_exit_code;
        }
        Err(e) => {
            eprintln!("pglock: {e}");
            return EXIT_DB;
        }
    };

    let program = &args.command[0];
    let mut child = match tokio::process::Command::new(program)
        .args(&args.command[1..])
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            eprintln!("pglock: cannot run {}: {e}", program.to_string_lossy());
            let _ = guard.release().await;
            return if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
        }
    };
    let pid = child.id().map(|pid| Pid::from_raw(pid as i32));
    let send = |sig: Signal| {
        if let Some(pid) = pid {
            // ESRCH: it has just exited; its status is collected below.
            let _ = kill(pid, sig);
        }
    };

    let mut lost: Option<pglock::Error> = None;
    let mut kill_at: Option<Instant> = None;
    let status: std::io::Result<ExitStatus> = loop {
        let deadline = async {
            match kill_at {
                Some(at) => sleep_until(at).await,
                None => pending().await,
            }
        };
        tokio::select! {
            status = child.wait() => break status,
            _ = sigint.recv() => send(Signal::SIGINT),
            _ = sigterm.recv() => send(Signal::SIGTERM),
            e = guard.lost(), if lost.is_none() => {
                eprintln!(
                    "pglock: {e}; the command may no longer run alone: sending it SIGTERM, \
                     and SIGKILL in {:?}",
                    args.grace
                );
                send(Signal::SIGTERM);
                kill_at = Some(Instant::now() + args.grace);
                lost = Some(e);
            }
            _ = deadline => {
                eprintln!("pglock: the command outlived the grace period: sending SIGKILL");
                send(Signal::SIGKILL);
                kill_at = None;
            }
        }
    };
    let code = match status {
        Ok(status) => exit_code(status),
        Err(e) => {
            eprintln!("pglock: cannot wait for the command: {e}");
            EXIT_DB
        }
    };
    if lost.is_some() {
        return EXIT_LOST;
    }
    match guard.release().await {
        Ok(()) => code,
        Err(e) if e.is_lost() => {
            eprintln!("pglock: {e}; the command may not have run alone");
            EXIT_LOST
        }
        Err(e) => {
            // The lock ends with pglock's connection in any case.
            eprintln!("pglock: warning: releasing the lock failed: {e}");
            code
        }
    }
}

/// The command's exit code, or 128 + the signal that ended it.
fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(signal)) => 128u8.wrapping_add(signal as u8),
        (None, None) => EXIT_DB,
    }
}
