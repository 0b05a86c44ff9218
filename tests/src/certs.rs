//! Certificates for TLS tests: a CA, a server certificate it signs for
//! `localhost` only, and an unrelated CA (rcgen).

use std::path::PathBuf;
use std::process::Command;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

use crate::{unique_name, Cluster};

/// A CA certificate (PEM) and its issuer.
fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

/// Certificates for one cluster: the server's (for `localhost` only), signed by
/// `ca.pem`; and an unrelated `wrong-ca.pem`.
pub struct TlsCerts {
    dir: PathBuf,
}

impl TlsCerts {
    /// Makes the certificates in a fresh directory under the system temporary
    /// directory (removed on drop).
    pub fn make() -> TlsCerts {
        let dir = std::env::temp_dir().join(unique_name("tls").replace(':', "_"));
        std::fs::create_dir_all(&dir).unwrap();
        let (ca_pem, issuer) = ca("pglock test CA");
        let (wrong_pem, _) = ca("some other CA");
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join("ca.pem"), ca_pem).unwrap();
        std::fs::write(dir.join("wrong-ca.pem"), wrong_pem).unwrap();
        std::fs::write(dir.join("server.crt"), cert.pem()).unwrap();
        std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
        // The server reads these as its own user, and wants the key private.
        let run = |args: &[&str]| {
            let ok = Command::new(args[0])
                .args(&args[1..])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(ok, "{args:?}");
        };
        let key_path = dir.join("server.key").display().to_string();
        run(&["chmod", "600", &key_path]);
        run(&["chmod", "755", &dir.display().to_string()]);
        if Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        {
            for f in ["server.crt", "server.key"] {
                run(&["chown", "postgres", &dir.join(f).display().to_string()]);
            }
        }
        TlsCerts { dir }
    }

    /// The path of one of the files: `ca.pem`, `wrong-ca.pem`, `server.crt`,
    /// `server.key`.
    pub fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }
}

impl TlsCerts {
    /// A throwaway cluster with `ssl = on` serving these certificates.
    pub fn cluster(&self) -> Cluster {
        Cluster::start(&[
            ("ssl", "on"),
            ("ssl_cert_file", &self.path("server.crt")),
            ("ssl_key_file", &self.path("server.key")),
        ])
        .unwrap_or_else(|e| panic!("cannot start a TLS cluster: {e}"))
    }
}

impl Drop for TlsCerts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
