//! TLS listeners: a rustls server configuration from Mosquitto-style options (PEM `certfile`
//! and `keyfile`; `cafile`/`capath` to verify client certificates; `require_certificate`;
//! `tls_version`), and the client certificate identity that `use_identity_as_username` uses.

use rustls::RootCertStore;
use rustls::crypto::ring;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
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

/// Certificates trusted for client authentication: every certificate in `cafile`, and in every
/// PEM file of `capath`.
fn trust_anchors(cafile: Option<&Path>, capath: Option<&Path>) -> Result<RootCertStore, String> {
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
