//! Sockets for the virtual users: name resolution (cached per run), the XMPP byte stream
//! (plain TCP, or TLS after STARTTLS, RFC 6120 §5), the open-files limit, and the local
//! address SIP users put in Via and Contact.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::error::LoadgenError;
use super::options::split_host_port;
use super::run::{Run, IO_TIMEOUT};

/// Resolves `HOST:PORT` (first address), cached for the run.
pub(super) async fn resolve(run: &Run, target: &str) -> Result<SocketAddr, LoadgenError> {
    if let Some(a) = run.resolved.borrow().get(target) {
        return Ok(*a);
    }
    let bad = |reason: String| LoadgenError::Resolve {
        target: target.to_string(),
        reason,
    };
    let (host, port) = split_host_port(target).ok_or_else(|| bad("expected HOST:PORT".into()))?;
    let addr = match host.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port),
        Err(_) => {
            let mut addrs = tokio::time::timeout(IO_TIMEOUT, tokio::net::lookup_host((host, port)))
                .await
                .map_err(|_| bad("timed out".into()))?
                .map_err(|e| bad(e.to_string()))?;
            addrs.next().ok_or_else(|| bad("no address".into()))?
        }
    };
    run.resolved.borrow_mut().insert(target.to_string(), addr);
    Ok(addr)
}

/// A client's XMPP connection: plain TCP or TLS on top of it.
pub(super) enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// After STARTTLS.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Accepts any server certificate: a load generator measures servers, it does not protect
/// secrets (the test accounts' passwords are patterns anyway). Signatures are still checked,
/// so the handshake itself is real.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The run's TLS client configuration, built once.
fn tls_config(run: &Run) -> Result<Arc<rustls::ClientConfig>, LoadgenError> {
    if let Some(c) = run.tls.borrow().as_ref() {
        return Ok(c.clone());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| LoadgenError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
        .with_no_client_auth();
    let config = Arc::new(config);
    *run.tls.borrow_mut() = Some(config.clone());
    Ok(config)
}

/// TLS handshake on `tcp` for `domain` (after `<proceed/>`).
pub(super) async fn start_tls(
    run: &Run,
    tcp: TcpStream,
    domain: &str,
) -> Result<Stream, LoadgenError> {
    let config = tls_config(run)?;
    let name = rustls::pki_types::ServerName::try_from(domain.to_string())
        .map_err(|e| LoadgenError::Tls(format!("server name {domain:?}: {e}")))?;
    let tls = tokio::time::timeout(
        IO_TIMEOUT,
        tokio_rustls::TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .map_err(|_| LoadgenError::Timeout("TLS handshake"))?
    .map_err(|e| LoadgenError::Tls(e.to_string()))?;
    Ok(Stream::Tls(Box::new(tls)))
}

/// Raises the soft open-files limit towards `needed` (up to the hard limit); returns the
/// (soft, hard) limits afterwards.
pub(super) fn raise_fd_limit(needed: u64) -> (u64, u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return (u64::MAX, u64::MAX);
        }
        // rlim_t is u64 on Linux, not everywhere.
        #[allow(clippy::unnecessary_cast)]
        let (cur, max) = (lim.rlim_cur as u64, lim.rlim_max as u64);
        if cur < needed && cur < max {
            let want = libc::rlimit {
                rlim_cur: needed.min(max) as libc::rlim_t,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                return (needed.min(max), max);
            }
        }
        (cur, max)
    }
}

/// The local address the system would use towards `target` (no packet is sent).
pub(super) fn local_ip_towards(target: SocketAddr) -> io::Result<IpAddr> {
    let any: SocketAddr = if target.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let probe = std::net::UdpSocket::bind(any)?;
    probe.connect(target)?;
    Ok(probe.local_addr()?.ip())
}

/// Asks for a large receive buffer on a UDP socket (bursts of NOTIFYs); best effort.
pub(super) fn set_recv_buffer(sock: &tokio::net::UdpSocket, bytes: usize) {
    use std::os::fd::AsRawFd;
    let v: libc::c_int = bytes.min(i32::MAX as usize) as libc::c_int;
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from a valid c_int.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &v as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}
