//! Network namespaces for partition tests: a client process runs in a namespace
//! joined to the host by a veth pair, and the test cuts, slows or heals its link.
//! Needs root and iproute2 (`ip netns`, `tc`); [`usable`] says whether the machine
//! allows it.

use std::process::Command;

/// Runs `ip` with `args`.
pub fn ip(args: &[&str]) -> Result<(), String> {
    tool("ip", args)
}

/// Runs `tc` with `args`.
pub fn tc(args: &[&str]) -> Result<(), String> {
    tool("tc", args)
}

fn tool(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `Ok` when this process may create network namespaces (root, `ip netns`);
/// otherwise why not.
pub fn usable() -> Result<(), String> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| e.to_string())?;
    if String::from_utf8_lossy(&root.stdout).trim() != "0" {
        return Err("not root".into());
    }
    ip(&["netns", "list"])
}

/// Which packets a cut drops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// The link goes down: nothing passes either way.
    Both,
    /// Packets from the namespace to the host are dropped; the host's still arrive.
    ToHost,
    /// Packets from the host to the namespace are dropped; the namespace's still
    /// arrive.
    ToNamespace,
}

/// A network namespace joined to the host by a veth pair, the host at
/// `10.<net>.<n>.1`, the namespace at `10.<net>.<n>.2`; removed on drop.
pub struct Namespace {
    /// The namespace's name (for `ip netns exec`).
    pub name: String,
    host_if: String,
    ns_if: String,
    net: u8,
    n: u8,
}

impl Namespace {
    /// Creates namespace `<tag><n>` (interfaces `<tag>h<n>`, `<tag>c<n>`; keep
    /// `tag` to 4 characters), replacing a leftover of the same name.
    pub fn create(tag: &str, net: u8, n: u8) -> Result<Namespace, String> {
        let name = format!("pglock_{tag}{n}");
        let (host_if, ns_if) = (format!("{tag}h{n}"), format!("{tag}c{n}"));
        let _ = ip(&["netns", "del", &name]);
        let _ = ip(&["link", "del", &host_if]);
        let ns = Namespace {
            name,
            host_if,
            ns_if,
            net,
            n,
        };
        ip(&["netns", "add", &ns.name])?;
        ip(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &ns.ns_if,
        ])?;
        ip(&["link", "set", &ns.ns_if, "netns", &ns.name])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/30", ns.host_ip()),
            "dev",
            &ns.host_if,
        ])?;
        ip(&["link", "set", &ns.host_if, "up"])?;
        ns.inside(&[
            "ip",
            "addr",
            "add",
            &format!("{}/30", ns.ns_ip()),
            "dev",
            &ns.ns_if,
        ])?;
        ns.inside(&["ip", "link", "set", &ns.ns_if, "up"])?;
        Ok(ns)
    }

    /// The host's address on the link.
    pub fn host_ip(&self) -> String {
        format!("10.{}.{}.1", self.net, self.n)
    }

    /// The namespace's address on the link.
    pub fn ns_ip(&self) -> String {
        format!("10.{}.{}.2", self.net, self.n)
    }

    /// The link's subnet, for `pg_hba.conf`.
    pub fn subnet(&self) -> String {
        format!("10.{}.{}.0/30", self.net, self.n)
    }

    fn inside(&self, command: &[&str]) -> Result<(), String> {
        let mut args = vec!["netns", "exec", &self.name];
        args.extend_from_slice(command);
        ip(&args)
    }

    /// Cuts the link as `cut` says; nothing is closed. A one-way cut replaces
    /// the sending interface's queue by one that holds no packet (`pfifo limit 0`),
    /// so everything sent that way is dropped.
    pub fn cut(&self, cut: Cut) -> Result<(), String> {
        let drop_all = ["root", "pfifo", "limit", "0"];
        match cut {
            Cut::Both => ip(&["link", "set", &self.host_if, "down"]),
            Cut::ToNamespace => {
                let mut args = vec!["qdisc", "replace", "dev", &self.host_if];
                args.extend_from_slice(&drop_all);
                tc(&args)
            }
            Cut::ToHost => {
                let mut args = vec!["tc", "qdisc", "replace", "dev", &self.ns_if];
                args.extend_from_slice(&drop_all);
                self.inside(&args)
            }
        }
    }

    /// Slows both directions to `rate` (a `tc` rate such as `2kbit`) with a token
    /// bucket (`tbf`) that queues what exceeds it for up to `latency`.
    pub fn slow(&self, rate: &str, latency: &str) -> Result<(), String> {
        let shape = [
            "qdisc", "replace", "dev", "", "root", "tbf", "rate", rate, "burst", "1600", "latency",
            latency,
        ];
        let mut host = shape;
        host[3] = &self.host_if;
        tc(&host)?;
        let mut inner = shape;
        inner[3] = &self.ns_if;
        let mut args = vec!["tc"];
        args.extend_from_slice(&inner);
        self.inside(&args)
    }

    /// Brings the link back as it was before any cut or slowdown.
    pub fn heal(&self) -> Result<(), String> {
        let _ = tc(&["qdisc", "del", "dev", &self.host_if, "root"]);
        let _ = self.inside(&["tc", "qdisc", "del", "dev", &self.ns_if, "root"]);
        ip(&["link", "set", &self.host_if, "up"])
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
        let _ = ip(&["link", "del", &self.host_if]);
    }
}
