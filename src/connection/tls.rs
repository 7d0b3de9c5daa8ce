//! The rustls client configuration of a `TlsConfig`: the system's roots (or the given CA),
//! an optional client certificate, and, with `rejectUnauthorized: false`, no checks.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::error::{RnError, RnResult};
use crate::options::TlsConfig;

fn bad(what: &str, e: impl std::fmt::Display) -> RnError {
  RnError::invalid(format!("TLS settings rejected: {what}: {e}"))
}

/// The client configuration for `tls`.
pub fn client_config(tls: &TlsConfig) -> RnResult<Arc<ClientConfig>> {
  let provider = Arc::new(rustls::crypto::ring::default_provider());
  let builder = ClientConfig::builder_with_provider(provider.clone())
    .with_safe_default_protocol_versions()
    .map_err(|e| bad("protocol versions", e))?;
  let builder = if tls.reject_unauthorized {
    let mut roots = RootCertStore::empty();
    match &tls.ca {
      Some(pem) => {
        for cert in CertificateDer::pem_slice_iter(pem) {
          roots
            .add(cert.map_err(|e| bad("tls.ca", e))?)
            .map_err(|e| bad("tls.ca", e))?;
        }
        if roots.is_empty() {
          return Err(bad("tls.ca", "no certificate in the PEM"));
        }
      }
      None => {
        for cert in rustls_native_certs::load_native_certs().certs {
          let _ = roots.add(cert); // a system root rustls cannot read is left out
        }
      }
    }
    builder.with_root_certificates(roots)
  } else {
    builder
      .dangerous()
      .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
  };
  let config = match (&tls.cert, &tls.key) {
    (Some(cert), Some(key)) => {
      let chain = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("tls.cert", e))?;
      let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| bad("tls.key", e))?;
      builder
        .with_client_auth_cert(chain, key)
        .map_err(|e| bad("tls.cert/tls.key", e))?
    }
    (None, None) => builder.with_no_client_auth(),
    _ => {
      return Err(RnError::invalid(
        "TLS settings rejected: tls.cert and tls.key go together",
      ))
    }
  };
  Ok(Arc::new(config))
}

/// The name the server certificate is checked against (and sent as SNI).
pub fn server_name(tls: &TlsConfig, host: &str) -> RnResult<ServerName<'static>> {
  let name = tls.servername.clone().unwrap_or_else(|| host.to_string());
  ServerName::try_from(name).map_err(|e| bad("servername", e))
}

/// `rejectUnauthorized: false`: any certificate (signatures are still checked, so the
/// handshake itself is sound).
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
  fn verify_server_cert(
    &self,
    _end_entity: &CertificateDer<'_>,
    _intermediates: &[CertificateDer<'_>],
    _server_name: &ServerName<'_>,
    _ocsp: &[u8],
    _now: UnixTime,
  ) -> Result<ServerCertVerified, rustls::Error> {
    Ok(ServerCertVerified::assertion())
  }

  fn verify_tls12_signature(
    &self,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
  ) -> Result<HandshakeSignatureValid, rustls::Error> {
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
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
  ) -> Result<HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls13_signature(
      message,
      cert,
      dss,
      &self.0.signature_verification_algorithms,
    )
  }

  fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
    self.0.signature_verification_algorithms.supported_schemes()
  }
}
