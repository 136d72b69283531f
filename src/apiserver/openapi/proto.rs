//! `/openapi/v2` in protobuf (gnostic `openapi_v2.Document`), for clients that ask for it
//! (kubectl's fallback when a kind is missing from v3). It carries `swagger`, `info` and empty
//! `paths` but no definitions: such a client then skips client-side validation for the kind,
//! as against kube-apiserver for schemaless kinds, and the server validates instead. Full
//! schemas are served in JSON and v3.

use bytes::Bytes;

/// Length-delimited field (wire type 2) with a one-byte length: every field here is short.
fn field(tag: u8, bytes: &[u8]) -> Vec<u8> {
    debug_assert!(bytes.len() < 128);
    let mut out = vec![(tag << 3) | 2, bytes.len() as u8];
    out.extend_from_slice(bytes);
    out
}

pub fn minimal_v2_document() -> Bytes {
    let mut info = field(1, b"Kubernetes");
    info.extend(field(2, crate::apiserver::KUBE_GIT_VERSION.as_bytes()));
    let mut doc = field(1, b"2.0"); // swagger
    doc.extend(field(2, &info)); // info
    doc.extend(field(8, &[])); // paths
    Bytes::from(doc)
}
