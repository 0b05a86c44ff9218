//! Tests that need several OS processes run their own test binary again as
//! children: an `#[ignore]`d entry-point test that does nothing unless its role
//! variable is set, and prints one `RESULT a b` line.

use std::process::{Child, Command, Stdio};

/// Runs this test binary again as a child, running only the ignored entry-point
/// test `entry`, with `env` set.
pub fn spawn_child(entry: &str, env: &[(&str, String)]) -> Child {
    Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            entry,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn a child process")
}

/// Waits for a child and parses its `RESULT a b` line; panics with its output
/// when it failed.
pub fn child_result(child: Child) -> (u64, u64) {
    let out = child.wait_with_output().expect("the child's output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed:\n{stdout}");
    let line = stdout
        .lines()
        .find_map(|l| l.split("RESULT ").nth(1))
        .unwrap_or_else(|| panic!("no RESULT in:\n{stdout}"));
    let mut parts = line
        .split_whitespace()
        .map(|p| p.parse::<u64>().expect("a number"));
    (
        parts.next().expect("two numbers"),
        parts.next().expect("two numbers"),
    )
}
