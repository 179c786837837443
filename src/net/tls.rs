//! TLS client setup: system roots, or a SHA-256 pin of the server certificate.

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, DigitallySignedStruct, Error as TlsError, RootCertStore, SignatureScheme,
};
use sha2::{Digest, Sha256};
use tokio_rustls::TlsConnector;

use super::{BoxIo, NetError};

/// The SHA-256 fingerprint of a certificate (of its DER encoding).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER certificate.
    pub fn of(der: &[u8]) -> Fingerprint {
        Fingerprint(Sha256::digest(der).into())
    }

    /// Parses `sha256:HEX` (colons between hex pairs allowed, as `openssl x509 -fingerprint` prints).
    pub fn parse(text: &str) -> Result<Fingerprint, String> {
        let hex = text
            .strip_prefix("sha256:")
            .or_else(|| text.strip_prefix("SHA256:"))
            .ok_or_else(|| "expected \"sha256:\" followed by 64 hex digits".to_string())?;
        let digits: String = hex.chars().filter(|&c| c != ':').collect();
        if digits.len() != 64 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err("expected \"sha256:\" followed by 64 hex digits".to_string());
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&digits[2 * i..2 * i + 2], 16)
                .map_err(|_| "bad hex digit".to_string())?;
        }
        Ok(Fingerprint(out))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha256:")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

fn roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut store = RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            let _ = store.add_parsable_certificates(found.certs);
            Arc::new(store)
        })
        .clone()
}

/// Checks the chain against the system roots, or only the pin when one is set; either way it
/// remembers the server certificate's fingerprint so a refusal can show it.
#[derive(Debug)]
struct Verifier {
    chain: Option<Arc<WebPkiServerVerifier>>,
    pin: Option<Fingerprint>,
    seen: Mutex<Option<Fingerprint>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        let fp = Fingerprint::of(end_entity);
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(fp);
        }
        match (&self.pin, &self.chain) {
            (Some(pin), _) if *pin == fp => Ok(ServerCertVerified::assertion()),
            (Some(_), _) => Err(TlsError::General(
                "certificate does not match the pinned fingerprint".into(),
            )),
            (None, Some(chain)) => {
                chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
            }
            (None, None) => Err(TlsError::General(
                "no trusted root certificates on this system".into(),
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Runs a TLS handshake over `io` (a fresh connection, or one after STARTTLS/STLS) and returns
/// the encrypted stream and the server certificate's fingerprint.
pub async fn start_tls(
    io: BoxIo,
    host: &str,
    pin: Option<Fingerprint>,
    timeout: Duration,
) -> Result<(BoxIo, Fingerprint), NetError> {
    let provider = provider();
    let roots = roots();
    let chain = if roots.is_empty() {
        None
    } else {
        WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .ok()
    };
    let verifier = Arc::new(Verifier {
        chain,
        pin,
        seen: Mutex::new(None),
        algorithms: provider.signature_verification_algorithms,
    });
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| NetError::Tls {
            host: host.to_string(),
            message: e.to_string(),
        })?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_string()).map_err(|_| NetError::Tls {
        host: host.to_string(),
        message: "not a valid host name for TLS".to_string(),
    })?;
    let connector = TlsConnector::from(Arc::new(config));
    let handshake = connector.connect(name, io);
    let result = tokio::time::timeout(timeout, handshake)
        .await
        .map_err(|_| NetError::Timeout {
            what: format!("the TLS handshake with {host}"),
            after: timeout,
        })?;
    let seen = verifier.seen.lock().ok().and_then(|s| *s);
    match result {
        Ok(stream) => {
            let fp = seen.ok_or_else(|| NetError::Tls {
                host: host.to_string(),
                message: "the server sent no certificate".to_string(),
            })?;
            Ok((Box::new(stream), fp))
        }
        Err(e) => {
            let tls = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<TlsError>());
            let is_cert = tls.is_some_and(|t| {
                matches!(t, TlsError::InvalidCertificate(_) | TlsError::General(_))
            });
            if tls.is_none() {
                // Not a TLS refusal but the connection failing under it: worth a retry.
                return Err(NetError::Io(e));
            }
            match (is_cert, seen) {
                (true, Some(fp)) => Err(NetError::Untrusted(match pin {
                    Some(p) => format!(
                        "the certificate of {host} ({fp}) does not match tls_fingerprint {p}"
                    ),
                    None => format!(
                        "the certificate of {host} is not trusted: {}; its fingerprint is {fp} \
                         (if you checked it, set tls_fingerprint = \"{fp}\")",
                        tls.map_or_else(|| e.to_string(), |t| in_words(t, host))
                    ),
                })),
                _ => Err(NetError::Tls {
                    host: host.to_string(),
                    message: e.to_string(),
                }),
            }
        }
    }
}

/// Why a certificate was refused, in words (the TLS library's own are type names).
fn in_words(e: &TlsError, host: &str) -> String {
    use rustls::CertificateError as C;
    let TlsError::InvalidCertificate(c) = e else {
        return e.to_string();
    };
    match c {
        C::Expired | C::ExpiredContext { .. } => "it has expired".to_string(),
        C::NotValidYet | C::NotValidYetContext { .. } => "it is not valid yet".to_string(),
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            format!("it is not valid for the name {host}")
        }
        C::UnknownIssuer => "no trusted authority signed it (self-signed, or signed by a private \
                             CA that is not in the system's trust store)"
            .to_string(),
        C::Revoked => "its authority revoked it".to_string(),
        C::BadSignature => "its signature does not verify".to_string(),
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
            "it is not meant for a server".to_string()
        }
        C::BadEncoding => "it cannot be read".to_string(),
        C::Other(other) if format!("{other:?}").contains("CaUsedAsEndEntity") => {
            "it is self-signed: a CA certificate used as the server's own".to_string()
        }
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_refusals_are_said_in_words() {
        use rustls::CertificateError as C;
        let said = |c: C| in_words(&TlsError::InvalidCertificate(c), "mail.example.org");
        assert_eq!(said(C::Expired), "it has expired");
        assert!(said(C::UnknownIssuer).contains("self-signed"));
        assert_eq!(
            said(C::NotValidForName),
            "it is not valid for the name mail.example.org"
        );
        // No variant's name, whatever the library calls it.
        for c in [C::NotValidYet, C::Revoked, C::BadSignature, C::BadEncoding] {
            let words = said(c.clone());
            assert!(
                words.contains(' ') && !words.contains(&format!("{c:?}")),
                "{words}"
            );
        }
    }

    #[test]
    fn fingerprint_parse_and_display() {
        let hex = "AB:".repeat(31) + "CD";
        let fp = Fingerprint::parse(&format!("sha256:{hex}")).unwrap();
        assert_eq!(fp.0[0], 0xab);
        assert_eq!(fp.0[31], 0xcd);
        assert_eq!(Fingerprint::parse(&fp.to_string()).unwrap(), fp);
        assert!(Fingerprint::parse("md5:00").is_err());
        assert!(Fingerprint::parse("sha256:abcd").is_err());
        assert!(Fingerprint::parse(&format!("sha256:{}", "zz".repeat(32))).is_err());
    }
}
