//! kubeconfig files for the admin and, later, for nodes.

use super::{write_file, PkiError};
use base64::Engine;
use std::path::Path;

/// What goes into a single-cluster, single-user kubeconfig.
pub struct KubeconfigSpec<'a> {
    pub server_url: &'a str,
    pub ca_pem: &'a str,
    pub client_cert_pem: &'a str,
    pub client_key_pem: &'a str,
}

/// Renders and writes a kubeconfig with the given file mode.
pub fn write_kubeconfig(path: &Path, spec: &KubeconfigSpec<'_>, mode: u32) -> Result<(), PkiError> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: {ca}
    server: {server}
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
preferences: {{}}
users:
- name: default
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
",
        ca = b64(spec.ca_pem),
        server = spec.server_url,
        cert = b64(spec.client_cert_pem),
        key = b64(spec.client_key_pem),
    );
    write_file(path, text.as_bytes(), mode)
}
