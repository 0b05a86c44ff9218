//! TLS for pglock's connections (feature `tls`): rustls with the ring provider,
//! with libpq's `sslmode` values and their meaning.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::conninfo;
use crate::Error;
use crate::Session;

/// libpq's `sslmode`: whether to use TLS and what to check.
///
/// | mode | TLS | certificate chain checked | host name checked |
/// |---|---|---|---|
/// | `disable` | never | — | — |
/// | `prefer` (libpq's default) | if the server offers it | no | no |
/// | `require` | always | no (yes, like `verify-ca`, when a root certificate file is given) | no |
/// | `verify-ca` | always | yes | no |
/// | `verify-full` | always | yes | yes |
///
/// `allow` is accepted as `prefer` (pglock never retries a refused plain
/// connection with TLS).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it, unverified; otherwise plain.
    Prefer,
    /// TLS or fail; the certificate is not verified unless a root certificate
    /// file is given (then as [`VerifyCa`](SslMode::VerifyCa), like libpq).
    Require,
    /// TLS, and the server's certificate must chain to a trusted root.
    VerifyCa,
    /// As [`VerifyCa`](SslMode::VerifyCa), and the certificate must name the host
    /// connected to.
    VerifyFull,
}

impl SslMode {
    /// The libpq spelling (`verify-full` …).
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SslMode {
    type Err = Error;

    /// Parses libpq's values (`allow` is taken as `prefer`).
    fn from_str(s: &str) -> Result<SslMode, Error> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(Error::invalid_argument(format!(
                    "sslmode {other:?} is not one of disable, allow, prefer, require, \
                     verify-ca, verify-full"
                )))
            }
        })
    }
}

/// Where trusted root certificates come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RootCerts {
    /// The operating system's store (libpq's `sslrootcert=system`).
    System,
    /// A PEM file of one or more certificates (`sslrootcert=/path/ca.pem`).
    File(PathBuf),
}

/// TLS settings for a connection: an [`SslMode`] and, for the verifying modes,
/// the root certificates.
///
/// ```
/// use pglock::tls::{RootCerts, SslMode, TlsOptions};
/// let tls = TlsOptions::new(SslMode::VerifyFull).root_certs(RootCerts::File("ca.pem".into()));
/// assert_eq!(tls.mode(), SslMode::VerifyFull);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsOptions {
    mode: SslMode,
    roots: Option<RootCerts>,
}

impl Default for TlsOptions {
    /// libpq's default: `prefer`.
    fn default() -> TlsOptions {
        TlsOptions::new(SslMode::Prefer)
    }
}

impl TlsOptions {
    /// Options with `mode` and the default roots: for the verifying modes that is
    /// libpq's `~/.postgresql/root.crt`; give others with
    /// [`root_certs`](TlsOptions::root_certs).
    pub fn new(mode: SslMode) -> TlsOptions {
        TlsOptions { mode, roots: None }
    }

    /// Trusts these root certificates.
    pub fn root_certs(mut self, roots: RootCerts) -> TlsOptions {
        self.roots = Some(roots);
        self
    }

    /// The mode.
    pub fn mode(&self) -> SslMode {
        self.mode
    }

    /// The root certificates given, if any.
    pub fn roots(&self) -> Option<&RootCerts> {
        self.roots.as_ref()
    }

    /// Reads `sslmode` (default `prefer`) and `sslrootcert` (a path, or
    /// `system`) from a URL or key=value connection string, and returns the rest
    /// as a driver configuration.
    ///
    /// ```
    /// use pglock::tls::{RootCerts, SslMode, TlsOptions};
    /// let (config, tls) = TlsOptions::from_conninfo(
    ///     "postgres://app@db.internal/app?sslmode=verify-full&sslrootcert=system",
    /// )?;
    /// assert_eq!(tls.mode(), SslMode::VerifyFull);
    /// assert_eq!(tls.roots(), Some(&RootCerts::System));
    /// assert_eq!(config.get_user(), Some("app"));
    /// # Ok::<(), pglock::Error>(())
    /// ```
    pub fn from_conninfo(conninfo: &str) -> Result<(tokio_postgres::Config, TlsOptions), Error> {
        let (config, params) = conninfo::parse(conninfo)?;
        Ok((config, TlsOptions::from_params(params)?))
    }

    pub(crate) fn from_params(params: conninfo::SslParams) -> Result<TlsOptions, Error> {
        let mode = match params.mode {
            Some(mode) => mode.parse()?,
            None => SslMode::Prefer,
        };
        let mut tls = TlsOptions::new(mode);
        if let Some(root) = params.root_cert {
            tls = tls.root_certs(if root == "system" {
                RootCerts::System
            } else {
                RootCerts::File(root.into())
            });
        }
        Ok(tls)
    }

    /// Sets the driver's own TLS switch to match (`disable`, `prefer`, or
    /// `require` for the three requiring modes).
    pub fn apply(&self, config: &mut tokio_postgres::Config) {
        config.ssl_mode(match self.mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        });
    }

    /// The rustls connector for `tokio_postgres::Config::connect` or a
    /// `deadpool_postgres::Manager`. Loads the root certificates now, so a
    /// missing or unreadable file is an [invalid-argument](Error::is_invalid_argument)
    /// error here rather than at the first connection.
    pub fn connector(&self) -> Result<MakeRustlsConnect, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verify_chain = match self.mode {
            SslMode::VerifyCa | SslMode::VerifyFull => true,
            SslMode::Require => matches!(self.roots, Some(RootCerts::File(_))),
            SslMode::Disable | SslMode::Prefer => false,
        };
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::invalid_argument(format!("TLS setup failed: {e}")))?;
        let config = if !verify_chain {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Custom {
                    roots: None,
                    provider,
                }))
                .with_no_client_auth()
        } else {
            let roots = Arc::new(self.load_roots()?);
            if self.mode == SslMode::VerifyFull {
                let verifier =
                    rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider)
                        .build()
                        .map_err(|e| Error::invalid_argument(format!("TLS setup failed: {e}")))?;
                builder.with_webpki_verifier(verifier).with_no_client_auth()
            } else {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(Custom {
                        roots: Some(roots),
                        provider,
                    }))
                    .with_no_client_auth()
            }
        };
        Ok(MakeRustlsConnect::new(config))
    }

    fn load_roots(&self) -> Result<RootCertStore, Error> {
        let mut store = RootCertStore::empty();
        match &self.roots {
            Some(RootCerts::System) => {
                let found = rustls_native_certs::load_native_certs();
                let (added, _) = store.add_parsable_certificates(found.certs);
                if added == 0 {
                    return Err(Error::invalid_argument(format!(
                        "sslmode={}: no usable root certificates in the system store{}",
                        self.mode,
                        found
                            .errors
                            .first()
                            .map(|e| format!(" ({e})"))
                            .unwrap_or_default()
                    )));
                }
            }
            Some(RootCerts::File(path)) => add_file(&mut store, path, self.mode)?,
            None => {
                let default = std::env::var_os("HOME")
                    .map(|home| Path::new(&home).join(".postgresql").join("root.crt"));
                match default {
                    Some(path) if path.exists() => add_file(&mut store, &path, self.mode)?,
                    _ => {
                        return Err(Error::invalid_argument(format!(
                            "sslmode={} needs root certificates: give sslrootcert=<file> or \
                             sslrootcert=system (libpq's default ~/.postgresql/root.crt does \
                             not exist)",
                            self.mode
                        )))
                    }
                }
            }
        }
        Ok(store)
    }

    /// Connects with these options, driving the connection on a spawned task.
    ///
    /// # Cancel safety
    /// Cancel-safe: dropping the future drops the half-made connection.
    pub async fn connect(
        &self,
        config: &tokio_postgres::Config,
    ) -> Result<tokio_postgres::Client, Error> {
        let mut config = config.clone();
        self.apply(&mut config);
        let client = if self.mode == SslMode::Disable {
            let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
            tokio::spawn(connection);
            client
        } else {
            let (client, connection) = config.connect(self.connector()?).await?;
            tokio::spawn(connection);
            client
        };
        Ok(client)
    }
}

fn add_file(store: &mut RootCertStore, path: &Path, mode: SslMode) -> Result<(), Error> {
    let unreadable = |e: &dyn fmt::Display| {
        Error::invalid_argument(format!(
            "sslmode={mode}: cannot read root certificates from {}: {e}",
            path.display()
        ))
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| unreadable(&e))?
        .collect::<Result<_, _>>()
        .map_err(|e| unreadable(&e))?;
    let (added, _) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(unreadable(&"no certificate in the file"));
    }
    Ok(())
}

impl Session {
    /// Connects like [`Session::connect`], with TLS as the connection string's
    /// `sslmode` and `sslrootcert` say (libpq's meaning; default `prefer`).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), pglock::Error> {
    /// let session = pglock::Session::connect_tls(
    ///     "postgres://app@db.internal/app?sslmode=verify-full&sslrootcert=/etc/ssl/db-ca.pem",
    /// )
    /// .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    /// Cancel-safe: dropping the future drops the half-made connection.
    pub async fn connect_tls(conninfo: &str) -> Result<Session, Error> {
        let (mut config, tls) = TlsOptions::from_conninfo(conninfo)?;
        let keepalive = crate::Keepalive::default();
        keepalive.configure_client(&mut config);
        tls.apply(&mut config);
        let connector = tls.connector()?;
        let plain = tls.mode == SslMode::Disable;
        Session::establish(config, keepalive, move |config| {
            let connector = connector.clone();
            async move {
                Ok(match plain {
                    true => {
                        let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
                        (client, Box::pin(connection) as crate::conn::Driver)
                    }
                    false => {
                        let (client, connection) = config.connect(connector).await?;
                        (client, Box::pin(connection) as crate::conn::Driver)
                    }
                })
            }
        })
        .await
    }
}

/// The certificate checks libpq makes and rustls's ready verifiers do not: without
/// roots (`prefer`, `require`) encrypted but unauthenticated, libpq's meaning;
/// with roots (`verify-ca`, `require` given a root file) the chain must end at a
/// trusted root, but the name is not checked. The handshake signatures are always
/// checked.
#[derive(Debug)]
struct Custom {
    roots: Option<Arc<RootCertStore>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Custom {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.provider.signature_verification_algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_as_libpq_spells_them() {
        for mode in [
            SslMode::Disable,
            SslMode::Prefer,
            SslMode::Require,
            SslMode::VerifyCa,
            SslMode::VerifyFull,
        ] {
            assert_eq!(mode.as_str().parse::<SslMode>().unwrap(), mode);
        }
        assert_eq!("allow".parse::<SslMode>().unwrap(), SslMode::Prefer);
        assert!("verify_full"
            .parse::<SslMode>()
            .unwrap_err()
            .is_invalid_argument());
    }

    #[test]
    fn verifying_modes_need_readable_roots() {
        let missing = TlsOptions::new(SslMode::VerifyFull)
            .root_certs(RootCerts::File("/nonexistent/ca.pem".into()))
            .connector()
            .map(|_| ())
            .unwrap_err();
        assert!(missing.is_invalid_argument());
        assert!(
            missing.to_string().contains("/nonexistent/ca.pem"),
            "{missing}"
        );
        // Modes that do not verify need none.
        assert!(TlsOptions::new(SslMode::Require).connector().is_ok());
        assert!(TlsOptions::new(SslMode::Prefer).connector().is_ok());
    }

    #[test]
    fn conninfo_defaults_to_prefer() {
        let (_, tls) = TlsOptions::from_conninfo("postgres://u@h/db").unwrap();
        assert_eq!(tls, TlsOptions::new(SslMode::Prefer));
        let (_, tls) =
            TlsOptions::from_conninfo("host=h sslmode=verify-ca sslrootcert=ca.pem").unwrap();
        assert_eq!(
            tls,
            TlsOptions::new(SslMode::VerifyCa).root_certs(RootCerts::File("ca.pem".into()))
        );
        assert!(TlsOptions::from_conninfo("postgres://h?sslmode=bogus").is_err());
    }
}
