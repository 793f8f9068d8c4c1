//! TLS listeners: a rustls server configuration from Mosquitto-style options (PEM `certfile`
//! and `keyfile`; `cafile`/`capath` to verify client certificates; `require_certificate`;
//! `tls_version`), and the client certificate identity that `use_identity_as_username` uses.
//! TLS bridges: a rustls client configuration from the bridge's options (`bridge_cafile`,
//! `bridge_capath`, `bridge_certfile`, `bridge_keyfile`, `bridge_insecure`,
//! `bridge_tls_version`, `bridge_alpn`).

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::ring;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::pki_types::{ServerName, UnixTime};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use std::path::Path;
use std::sync::Arc;

/// The TLS protocol versions a listener accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versions {
    /// TLS 1.2 and 1.3.
    Default,
    /// Only TLS 1.2 (Mosquitto's `tls_version tlsv1.2`).
    Tls12,
    /// Only TLS 1.3 (`tls_version tlsv1.3`).
    Tls13,
}

/// What a TLS listener needs.
#[derive(Debug, Clone)]
pub struct Settings<'a> {
    pub certfile: &'a Path,
    pub keyfile: &'a Path,
    pub cafile: Option<&'a Path>,
    pub capath: Option<&'a Path>,
    pub require_certificate: bool,
    pub versions: Versions,
}

/// Builds the server configuration, or says which file or setting is wrong.
pub fn server_config(s: &Settings<'_>) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(ring::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(s.certfile)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| format!("certfile {}: {e}", s.certfile.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "certfile {}: no certificate found",
            s.certfile.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(s.keyfile)
        .map_err(|e| format!("keyfile {}: {e}", s.keyfile.display()))?;
    let versions: &[&'static rustls::SupportedProtocolVersion] = match s.versions {
        Versions::Default => rustls::DEFAULT_VERSIONS,
        Versions::Tls12 => &[&rustls::version::TLS12],
        Versions::Tls13 => &[&rustls::version::TLS13],
    };
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions)
        .map_err(|e| format!("TLS versions: {e}"))?;
    let builder = if s.cafile.is_some() || s.capath.is_some() {
        let roots = trust_anchors(s.cafile, s.capath)?;
        let mut verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
        if !s.require_certificate {
            verifier = verifier.allow_unauthenticated();
        }
        let verifier = verifier
            .build()
            .map_err(|e| format!("client certificate verification: {e}"))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("certfile/keyfile: {e}"))?;
    // Offered for MQTT over TLS clients that use ALPN (e.g. port 443 deployments).
    config.alpn_protocols = vec![b"mqtt".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// What a TLS bridge needs, with its files already read.
#[derive(Debug)]
pub struct ClientSettings {
    /// The CAs the remote broker's certificate must chain to.
    pub roots: RootCertStore,
    /// The client certificate chain and key to present, if any.
    pub identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    /// Accept a certificate for another host name (`bridge_insecure`); the chain and dates
    /// are still checked.
    pub insecure: bool,
    pub versions: Versions,
    pub alpn: Option<Vec<u8>>,
}

/// Builds a bridge's client configuration, on the same crypto provider as the listeners.
pub fn client_config(s: ClientSettings) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(ring::default_provider());
    let versions: &[&'static rustls::SupportedProtocolVersion] = match s.versions {
        Versions::Default => rustls::DEFAULT_VERSIONS,
        Versions::Tls12 => &[&rustls::version::TLS12],
        Versions::Tls13 => &[&rustls::version::TLS13],
    };
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions)
        .map_err(|e| format!("TLS versions: {e}"))?;
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(s.roots), provider)
        .build()
        .map_err(|e| format!("server certificate verification: {e}"))?;
    let builder = if s.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyHostName(verifier)))
    } else {
        builder.with_webpki_verifier(verifier)
    };
    let mut config = match s.identity {
        Some((certs, key)) => builder
            .with_client_auth_cert(certs, key)
            .map_err(|e| format!("bridge_certfile/bridge_keyfile: {e}"))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = s.alpn.into_iter().collect();
    Ok(Arc::new(config))
}

/// A PEM certificate chain, or why it cannot be read.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", path.display()));
    }
    Ok(certs)
}

/// A PEM private key, or why it cannot be read.
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// `bridge_insecure`: WebPKI verification that forgives only a certificate issued for another
/// name. The chain to the configured CAs, the dates and the handshake signatures are checked as
/// usual (webpki checks the name last, so a name error means everything else passed).
#[derive(Debug)]
struct AnyHostName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Trusted CA certificates (of clients for a listener, of the remote broker for a bridge):
/// every certificate in `cafile`, and in every PEM file of `capath`.
pub fn trust_anchors(
    cafile: Option<&Path>,
    capath: Option<&Path>,
) -> Result<RootCertStore, String> {
    let mut files = Vec::new();
    if let Some(f) = cafile {
        files.push(f.to_path_buf());
    }
    if let Some(dir) = capath {
        let entries =
            std::fs::read_dir(dir).map_err(|e| format!("capath {}: {e}", dir.display()))?;
        let mut paths: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        paths.sort();
        files.extend(paths);
    }
    let mut roots = RootCertStore::empty();
    for file in &files {
        let certs = CertificateDer::pem_file_iter(file)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("{}: {e}", file.display()))?;
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("{}: {e}", file.display()))?;
        }
    }
    if roots.is_empty() {
        return Err("cafile/capath: no CA certificate found".to_owned());
    }
    Ok(roots)
}

/// The Common Name of a certificate's subject.
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}
