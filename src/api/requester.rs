//! The user a write is made for, as the few strategies that record it see it (a
//! CertificateSigningRequest stores its requester in `spec.username`/`uid`/`groups`/`extra`).
//!
//! Invariant: plain data, no I/O; the API server fills it from the authenticated identity
//! and passes it only to strategies that ask for it, so other writes pay nothing.

use std::collections::BTreeMap;

/// Who asked for a write: upstream's `user.Info` as a strategy reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requester {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}
