//! On-disk layout of the store inside ONE sled tree, so that a write's record, its event-log
//! entry and the revision counter go into one atomic `sled::Batch`.
//!
//! Key spaces (the first byte separates them):
//! - `k` + key bytes            → record: mod_revision u64 BE | create_revision u64 BE | value
//! - `e` + revision u64 BE      → event: kind u8 | key_len u32 BE | key | value_len u32 BE | value
//!   | [prev mod_revision u64 BE | prev create_revision u64 BE, iff the PREV_REVS flag is set]
//!   | prev value (rest; present iff the kind's PREV flag is set). Entries written before the
//!   PREV_REVS flag existed lack the revisions; they are read as "unknown".
//! - `m` + name                 → metadata (u64 BE): current revision, compacted revision
//!
//! Big-endian revisions make the event log iterate in revision order.

use bytes::Bytes;

use super::{Event, EventKind, Record, Revisions, StoreError};

const RECORD: u8 = b'k';
const EVENT: u8 = b'e';
pub(super) const META_REVISION: &[u8] = b"mrevision";
pub(super) const META_COMPACTED: &[u8] = b"mcompacted";

const KIND_PUT: u8 = 1;
const KIND_DELETE: u8 = 2;
const FLAG_PREV: u8 = 0x80;
const FLAG_PREV_REVS: u8 = 0x40;
const FLAGS: u8 = FLAG_PREV | FLAG_PREV_REVS;

pub(super) fn record_key(key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + key.len());
    k.push(RECORD);
    k.extend_from_slice(key.as_bytes());
    k
}

pub(super) fn event_key(revision: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = EVENT;
    k[1..].copy_from_slice(&revision.to_be_bytes());
    k
}

pub(super) fn event_key_revision(k: &[u8]) -> Result<u64, StoreError> {
    match k {
        [EVENT, rest @ ..] => {
            Ok(u64::from_be_bytes(rest.try_into().map_err(|_| {
                StoreError::Corrupt(format!("event key of {} bytes", k.len()))
            })?))
        }
        _ => Err(StoreError::Corrupt("event key without event prefix".into())),
    }
}

pub(super) fn encode_u64(v: u64) -> [u8; 8] {
    v.to_be_bytes()
}

pub(super) fn decode_u64(what: &str, raw: &[u8]) -> Result<u64, StoreError> {
    let arr: [u8; 8] = raw
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("{what}: {} bytes, want 8", raw.len())))?;
    Ok(u64::from_be_bytes(arr))
}

pub(super) fn encode_record(mod_revision: u64, create_revision: u64, value: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(16 + value.len());
    v.extend_from_slice(&mod_revision.to_be_bytes());
    v.extend_from_slice(&create_revision.to_be_bytes());
    v.extend_from_slice(value);
    v
}

/// `raw_key` is the full sled key (with the record prefix).
pub(super) fn decode_record(raw_key: &[u8], raw: &[u8]) -> Result<Record, StoreError> {
    let key = raw_key
        .strip_prefix(&[RECORD])
        .ok_or_else(|| StoreError::Corrupt("record key without record prefix".into()))?;
    let key = std::str::from_utf8(key)
        .map_err(|_| StoreError::Corrupt("record key is not UTF-8".into()))?
        .to_owned();
    if raw.len() < 16 {
        return Err(StoreError::Corrupt(format!(
            "record {key}: {} bytes",
            raw.len()
        )));
    }
    Ok(Record {
        mod_revision: decode_u64("mod revision", &raw[..8])?,
        create_revision: decode_u64("create revision", &raw[8..16])?,
        value: Bytes::copy_from_slice(&raw[16..]),
        key,
    })
}

fn len_u32(what: &str, len: usize) -> Result<[u8; 4], StoreError> {
    u32::try_from(len)
        .map(u32::to_be_bytes)
        .map_err(|_| StoreError::TooLarge(format!("{what} of {len} bytes")))
}

pub(super) fn encode_event(ev: &Event) -> Result<Vec<u8>, StoreError> {
    let prev_len = ev.prev_value.as_ref().map_or(0, Bytes::len);
    let mut v = Vec::with_capacity(25 + ev.key.len() + ev.value.len() + prev_len);
    let mut tag = match ev.kind {
        EventKind::Put => KIND_PUT,
        EventKind::Delete => KIND_DELETE,
    };
    if ev.prev_value.is_some() {
        tag |= FLAG_PREV;
    }
    if ev.prev_revisions.is_some() {
        tag |= FLAG_PREV_REVS;
    }
    v.push(tag);
    v.extend_from_slice(&len_u32("key", ev.key.len())?);
    v.extend_from_slice(ev.key.as_bytes());
    v.extend_from_slice(&len_u32("value", ev.value.len())?);
    v.extend_from_slice(&ev.value);
    if let Some(revs) = &ev.prev_revisions {
        v.extend_from_slice(&revs.mod_revision.to_be_bytes());
        v.extend_from_slice(&revs.create_revision.to_be_bytes());
    }
    if let Some(prev) = &ev.prev_value {
        v.extend_from_slice(prev);
    }
    Ok(v)
}

/// Decodes a log entry, but only builds the event when its key starts with `prefix`: a
/// catching-up watcher reads every entry and most of them are usually filtered out.
pub(super) fn decode_event_if(
    revision: u64,
    raw: &[u8],
    prefix: &str,
) -> Result<Option<Event>, StoreError> {
    let corrupt = || StoreError::Corrupt(format!("event {revision} is truncated"));
    let (&tag, rest) = raw.split_first().ok_or_else(corrupt)?;
    let kind = match tag & !FLAGS {
        KIND_PUT => EventKind::Put,
        KIND_DELETE => EventKind::Delete,
        other => {
            return Err(StoreError::Corrupt(format!(
                "event {revision}: kind {other}"
            )))
        }
    };
    let (key, rest) = split_len_prefixed(rest).ok_or_else(corrupt)?;
    if !key.starts_with(prefix.as_bytes()) {
        return Ok(None);
    }
    let key = std::str::from_utf8(key)
        .map_err(|_| StoreError::Corrupt(format!("event {revision}: key is not UTF-8")))?;
    let (value, rest) = split_len_prefixed(rest).ok_or_else(corrupt)?;
    let (prev_revisions, prev) = if tag & FLAG_PREV_REVS != 0 {
        let (mod_revision, rest) = rest.split_first_chunk::<8>().ok_or_else(corrupt)?;
        let (create_revision, rest) = rest.split_first_chunk::<8>().ok_or_else(corrupt)?;
        let revs = Revisions {
            mod_revision: u64::from_be_bytes(*mod_revision),
            create_revision: u64::from_be_bytes(*create_revision),
        };
        (Some(revs), rest)
    } else {
        (None, rest)
    };
    let prev_value = if tag & FLAG_PREV != 0 {
        Some(Bytes::copy_from_slice(prev))
    } else if prev.is_empty() {
        None
    } else {
        return Err(corrupt());
    };
    Ok(Some(Event {
        revision,
        kind,
        key: key.to_owned(),
        value: Bytes::copy_from_slice(value),
        prev_value,
        prev_revisions,
        parsed: Default::default(),
    }))
}

fn split_len_prefixed(raw: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = raw.split_first_chunk::<4>()?;
    let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
    (rest.len() >= len).then(|| rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(prev: Option<&'static [u8]>) -> Event {
        Event {
            revision: 7,
            kind: EventKind::Delete,
            key: "core/pods/ns/a".into(),
            value: Bytes::from_static(b"tomb"),
            prev_value: prev.map(Bytes::from_static),
            prev_revisions: prev.map(|_| Revisions {
                mod_revision: 5,
                create_revision: 3,
            }),
            parsed: Default::default(),
        }
    }

    #[test]
    fn event_round_trips_with_and_without_previous_value() {
        for prev in [None, Some(&b""[..]), Some(&b"old"[..])] {
            let ev = event(prev);
            let raw = encode_event(&ev).expect("small event encodes");
            let back = decode_event_if(7, &raw, "core/").expect("decodes");
            assert_eq!(back, Some(ev));
        }
    }

    #[test]
    fn event_written_without_previous_revisions_still_decodes() {
        let ev = Event {
            prev_revisions: None,
            ..event(Some(b"old"))
        };
        let raw = encode_event(&ev).expect("small event encodes");
        assert_eq!(raw[0] & FLAG_PREV_REVS, 0, "no revisions flag");
        let back = decode_event_if(7, &raw, "").expect("decodes");
        assert_eq!(back, Some(ev));
    }

    #[test]
    fn event_outside_prefix_is_skipped_without_decoding_value() {
        let raw = encode_event(&event(Some(b"old"))).expect("small event encodes");
        assert_eq!(decode_event_if(7, &raw, "apps/").expect("decodes"), None);
    }

    #[test]
    fn truncated_event_is_reported_corrupt() {
        let raw = encode_event(&event(None)).expect("small event encodes");
        let err = decode_event_if(7, &raw[..raw.len() - 1], "").expect_err("truncated");
        assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    }

    #[test]
    fn record_round_trips_and_event_keys_sort_by_revision() {
        let raw = encode_record(9, 3, b"v");
        let rec = decode_record(&record_key("a/b"), &raw).expect("decodes");
        assert_eq!(
            (rec.key.as_str(), rec.mod_revision, rec.create_revision),
            ("a/b", 9, 3)
        );
        assert_eq!(&rec.value[..], b"v");
        assert!(event_key(255) < event_key(256));
        assert_eq!(event_key_revision(&event_key(256)).expect("valid"), 256);
    }
}
