//! Real peers written in Python: a cached virtualenv with django-pglock, and a
//! small script that takes its advisory locks through Django.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// The packages the django-pglock peer needs: Django, django-pglock (which pulls
/// in django-pgactivity), a PostgreSQL driver Django supports, and
/// typing-extensions, which django-pglock imports without declaring it.
pub const DJANGO_PGLOCK_PACKAGES: &[&str] = &[
    "django",
    "django-pglock",
    "psycopg2-binary",
    "typing-extensions",
];

/// The peer script. Arguments: `hold NAME` takes `pglock.advisory(NAME)` (waiting
/// as long as needed), prints `HELD <key> <backend pid>`, holds it until a line
/// (or end of file) arrives on stdin, releases it and prints `RELEASED`;
/// `try NAME` makes one non-blocking attempt (`timeout=0`) and prints
/// `ACQUIRED <key>` or `BUSY <key>`. The server is the URL in
/// `PGLOCK_PEER_URL`.
pub const DJANGO_PGLOCK_PEER: &str = r#"
import os, sys
from urllib.parse import urlparse, unquote

import django
from django.conf import settings

url = urlparse(os.environ["PGLOCK_PEER_URL"])
settings.configure(
    DATABASES={
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(url.path.lstrip("/")) or "postgres",
            "USER": unquote(url.username or "postgres"),
            "PASSWORD": unquote(url.password or ""),
            "HOST": url.hostname or "localhost",
            "PORT": str(url.port or 5432),
            "OPTIONS": {"application_name": "django-pglock-peer"},
        }
    },
    INSTALLED_APPS=["pgactivity", "pglock"],
    USE_TZ=True,
)
django.setup()

import pglock
from django.db import connection

mode, name = sys.argv[1], sys.argv[2]
key = pglock.advisory(name).int_lock_id
with connection.cursor() as cursor:
    cursor.execute("SELECT pg_backend_pid()")
    pid = cursor.fetchone()[0]

if mode == "hold":
    with pglock.advisory(name, timeout=None) as acquired:
        assert acquired
        print(f"HELD {key} {pid}", flush=True)
        sys.stdin.readline()
    print("RELEASED", flush=True)
elif mode == "try":
    with pglock.advisory(name, timeout=0) as acquired:
        print(f"{'ACQUIRED' if acquired else 'BUSY'} {key}", flush=True)
else:
    sys.exit(f"unknown mode {mode!r}")
"#;

/// A Python interpreter in a virtualenv under `cache_dir` with
/// [`DJANGO_PGLOCK_PACKAGES`] installed, and the peer script
/// ([`DJANGO_PGLOCK_PEER`]) written next to it: `(python, script)`.
///
/// The virtualenv is made once (`python3 -m venv`, `pip install`) and reused by
/// later runs while it still imports the packages; pass a directory that
/// survives runs, such as `env!("CARGO_TARGET_TMPDIR")` of an integration test.
/// `Err` says why there is none (no `python3`, no `venv` module, no network for
/// `pip` …): callers skip their test with that message.
pub fn django_pglock_peer(cache_dir: &Path) -> Result<(PathBuf, PathBuf), String> {
    // One creator at a time within the test process.
    static CREATING: Mutex<()> = Mutex::new(());
    let _creating = CREATING.lock().unwrap_or_else(|e| e.into_inner());

    let venv = cache_dir.join("django-pglock-venv");
    let python = venv.join("bin").join("python");
    let ready = || {
        Command::new(&python)
            .args(["-c", "import django, pglock, pgactivity, psycopg2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if !ready() {
        std::fs::create_dir_all(cache_dir).map_err(|e| format!("{}: {e}", cache_dir.display()))?;
        let _ = std::fs::remove_dir_all(&venv);
        let python3 = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
        step(Command::new(&python3).args(["-m", "venv"]).arg(&venv))
            .map_err(|e| format!("cannot create a virtualenv with `{python3} -m venv`: {e}"))?;
        step(
            Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .args(DJANGO_PGLOCK_PACKAGES),
        )
        .map_err(|e| {
            format!(
                "cannot install {} with pip: {e}",
                DJANGO_PGLOCK_PACKAGES.join(" ")
            )
        })?;
        if !ready() {
            return Err(format!(
                "the virtualenv at {} does not import django and pglock after pip install",
                venv.display()
            ));
        }
    }
    let script = venv.join("django_pglock_peer.py");
    std::fs::write(&script, DJANGO_PGLOCK_PEER)
        .map_err(|e| format!("{}: {e}", script.display()))?;
    Ok((python, script))
}

fn step(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
