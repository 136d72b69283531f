//! x509 client certificates: rustls has already verified the chain against the cluster CA
//! during the handshake; the subject's CN is the user and each O a group (upstream's
//! `CommonNameUserConversion`).
//!
//! Invariant: runs once per connection, not per request.

use crate::apiserver::auth::UserInfo;

/// The identity of a verified client certificate (DER), `None` when it names no user.
pub fn user_of(der: &[u8]) -> Option<UserInfo> {
    let (name, groups) = crate::pki::client_identity(der)?;
    if name.is_empty() {
        return None;
    }
    Some(super::authenticated(UserInfo {
        name,
        groups,
        ..UserInfo::default()
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn certificate_subject_maps_to_user_and_groups() {
        let dir = tempfile::tempdir().unwrap();
        let pki = crate::pki::ServerPki::ensure(dir.path(), &[]).unwrap();
        let pair = pki.issue_client("jane", &["devs"]).unwrap();
        let der = crate::pki::certs_from_pem(&pair.cert_pem).unwrap();
        let u = super::user_of(&der[0]).unwrap();
        assert_eq!(u.name, "jane");
        assert_eq!(u.groups, ["devs", "system:authenticated"]);
    }
}
