//! Server certificate for STARTTLS (RFC 6120 §5, §13.7).
//!
//! Uses the configured PEM files, or a self-signed certificate for the cluster domain that is
//! generated on first start and kept in the data dir, so a restarted node presents the same
//! certificate and clients that pinned it keep working.

use std::fs;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;

/// Why the TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The PEM files hold no usable certificate or key.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// Certificate generation failed.
    #[error("generating a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the certificate/key pair.
    #[error("rustls: {0}")]
    Rustls(#[from] rustls::Error),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Returns the (cert, key) PEM paths to use: the configured ones, or the self-signed pair in
/// `data_dir`, generating it for `domain` when absent.
pub fn ensure_certificate(
    cert: &str,
    key: &str,
    data_dir: &Path,
    domain: &str,
) -> Result<(PathBuf, PathBuf), TlsError> {
    if !cert.is_empty() {
        return Ok((PathBuf::from(cert), PathBuf::from(key)));
    }
    let cert_path = data_dir.join("cert.pem");
    let key_path = data_dir.join("key.pem");
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    fs::create_dir_all(data_dir).map_err(io_err(data_dir))?;
    let generated = rcgen::generate_simple_self_signed(vec![domain.to_string()])?;
    fs::write(&cert_path, generated.cert.pem()).map_err(io_err(&cert_path))?;
    fs::write(&key_path, generated.signing_key.serialize_pem()).map_err(io_err(&key_path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600))
            .map_err(io_err(&key_path))?;
    }
    tracing::info!(cert = %cert_path.display(), %domain, "generated a self-signed certificate");
    Ok((cert_path, key_path))
}

/// Builds the rustls server configuration from PEM files.
pub fn server_config(cert_path: &Path, key_path: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let cert_file = fs::File::open(cert_path).map_err(io_err(cert_path))?;
    let certs = rustls_pemfile::certs(&mut BufReader::new(cert_file))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io_err(cert_path))?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: cert_path.to_path_buf(),
            reason: "no CERTIFICATE block".into(),
        });
    }
    let key_file = fs::File::open(key_path).map_err(io_err(key_path))?;
    let key = rustls_pemfile::private_key(&mut BufReader::new(key_file))
        .map_err(io_err(key_path))?
        .ok_or_else(|| TlsError::Pem {
            path: key_path.to_path_buf(),
            reason: "no PRIVATE KEY block".into(),
        })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_is_generated_once_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let (c1, k1) = ensure_certificate("", "", dir.path(), "example.org").unwrap();
        let first = fs::read(&c1).unwrap();
        let (c2, _) = ensure_certificate("", "", dir.path(), "example.org").unwrap();
        assert_eq!(first, fs::read(&c2).unwrap(), "kept across restarts");
        server_config(&c1, &k1).unwrap();
    }

    #[test]
    fn missing_key_block_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (c, _) = ensure_certificate("", "", dir.path(), "example.org").unwrap();
        let err = server_config(&c, &c).unwrap_err().to_string();
        assert!(err.contains("no PRIVATE KEY"), "{err}");
    }
}
