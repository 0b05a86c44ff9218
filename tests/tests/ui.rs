//! Compile-time behaviour of `#[pglock::advisory]` (trybuild): every accepted form
//! compiles (`ui/pass`), every misuse is an error that points at the offending token
//! and says what to write instead (`ui/fail/*.rs` with its `.stderr`).
//!
//! The `.stderr` files are what rustc 1.95 prints; other compilers word some errors
//! differently, so on another version this test says so and does nothing (set
//! `PGLOCK_UI=1` to run it anyway). Regenerate with `TRYBUILD=overwrite`.

use std::process::Command;

/// The compiler the `.stderr` files were written with.
const PINNED: &str = "rustc 1.95.";

#[test]
fn ui() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let version = Command::new(&rustc)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    if !version.starts_with(PINNED) && std::env::var_os("PGLOCK_UI").is_none() {
        eprintln!(
            "skipping the UI tests: their .stderr files are for {PINNED}x, this is {version:?} \
             (set PGLOCK_UI=1 to run them anyway)"
        );
        return;
    }
    let t = trybuild::TestCases::new();
    t.pass("ui/pass/*.rs");
    t.compile_fail("ui/fail/*.rs");
}
