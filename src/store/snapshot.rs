//! Point-in-time reads: a prefix as it was at an older revision. The API server reads every
//! page of a chunked list at the first page's revision (etcd's `WithRev`), so objects
//! created, changed or deleted between pages do not show up on later pages.
//!
//! How: list the prefix as it is now, then undo the writes made after the requested
//! revision with the event log. The first logged write of a key after that revision carries
//! the record as it was before (`prev_value` and `prev_revisions`), or says that the key did
//! not exist yet. Why this way: sled keeps only the newest record of each key, and the event
//! log already holds every write since the compacted revision with its previous value
//! (catching-up watchers need it). A snapshot therefore costs one current scan (the same as
//! a plain list) plus a read of the log after the revision, which compaction bounds
//! (`compaction_keep_revisions`); keeping old versions in sled instead would cost every
//! write and every plain read. History the log no longer holds is `Compacted`.

use std::collections::BTreeMap;

use super::shared::Shared;
use super::{Event, Page, Record, StoreError};

pub(super) async fn list_at(
    shared: &Shared,
    prefix: &str,
    start_after: Option<&str>,
    limit: usize,
    at: u64,
) -> Result<Page, StoreError> {
    ensure_not_compacted(shared, at)?;
    let now = shared.list_from(prefix, start_after, 0).await?;
    if at > now.revision {
        return Err(StoreError::FutureRevision {
            requested: at,
            current: now.revision,
        });
    }
    let undo = if at == now.revision {
        BTreeMap::new()
    } else {
        let log = shared.read_log(at + 1, now.revision, usize::MAX, prefix)?;
        // Compaction marks its revision before it deletes entries: if the mark is still at
        // or below `at`, the log we read was whole.
        ensure_not_compacted(shared, at)?;
        state_before_later_writes(log.into_iter().filter_map(|(_, ev)| ev), start_after, at)?
    };
    let (records, more) = undo_writes(now.records, undo, limit);
    Ok(Page {
        records,
        revision: at,
        more,
    })
}

fn ensure_not_compacted(shared: &Shared, at: u64) -> Result<(), StoreError> {
    let compacted = shared.compacted_revision();
    if at < compacted {
        return Err(StoreError::Compacted {
            requested: at,
            compacted,
        });
    }
    Ok(())
}

/// For every key (after `start_after`) written after `at`: its record at `at`, `None` if it
/// did not exist then. `events` are in revision order, so the first one of a key wins.
fn state_before_later_writes(
    events: impl Iterator<Item = Event>,
    start_after: Option<&str>,
    at: u64,
) -> Result<BTreeMap<String, Option<Record>>, StoreError> {
    let mut undo = BTreeMap::new();
    for ev in events {
        if start_after.is_some_and(|s| ev.key.as_str() <= s) || undo.contains_key(&ev.key) {
            continue;
        }
        let before = match (ev.prev_value, ev.prev_revisions) {
            (None, _) => None,
            (Some(value), Some(revs)) => Some(Record {
                key: ev.key.clone(),
                value,
                mod_revision: revs.mod_revision,
                create_revision: revs.create_revision,
            }),
            // Written by a version that did not log the previous revisions: this history
            // cannot give a whole record, which to the caller is the same as compacted.
            (Some(_), None) => {
                return Err(StoreError::Compacted {
                    requested: at,
                    compacted: ev.revision,
                })
            }
        };
        undo.insert(ev.key, before);
    }
    Ok(undo)
}

/// Merges the current records (in key order) with the older state of the keys written
/// since; stops after `limit` records (0 = all) and says whether more follow.
fn undo_writes(
    current: Vec<Record>,
    undo: BTreeMap<String, Option<Record>>,
    limit: usize,
) -> (Vec<Record>, bool) {
    let mut out = Vec::with_capacity(current.len());
    let mut undo = undo.into_iter().peekable();
    let full = |out: &Vec<Record>| limit != 0 && out.len() > limit;
    for rec in current {
        // Keys deleted since `at` sort in between the current ones.
        while let Some((_, before)) = undo.next_if(|(k, _)| *k < rec.key) {
            out.extend(before);
        }
        match undo.next_if(|(k, _)| *k == rec.key) {
            Some((_, before)) => out.extend(before),
            None => out.push(rec),
        }
        if full(&out) {
            break;
        }
    }
    if !full(&out) {
        out.extend(undo.filter_map(|(_, before)| before));
    }
    let more = full(&out);
    if more {
        out.truncate(limit);
    }
    (out, more)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn rec(key: &str, value: &str, rev: u64) -> Record {
        Record {
            key: key.into(),
            value: Bytes::copy_from_slice(value.as_bytes()),
            mod_revision: rev,
            create_revision: rev,
        }
    }

    fn keys(records: &[Record]) -> Vec<&str> {
        records.iter().map(|r| r.key.as_str()).collect()
    }

    #[test]
    fn undo_interleaves_deleted_keys_drops_created_ones_and_honours_the_limit() {
        let current = vec![rec("b", "new", 9), rec("c", "x", 3), rec("e", "made", 8)];
        let undo = BTreeMap::from([
            ("a".to_string(), Some(rec("a", "gone", 2))),
            ("b".to_string(), Some(rec("b", "old", 4))),
            ("d".to_string(), Some(rec("d", "gone", 5))),
            ("e".to_string(), None),
        ]);
        let (all, more) = undo_writes(current.clone(), undo.clone(), 0);
        assert_eq!((keys(&all), more), (vec!["a", "b", "c", "d"], false));
        assert_eq!(&all[1].value[..], b"old");
        let (page, more) = undo_writes(current.clone(), undo.clone(), 2);
        assert_eq!((keys(&page), more), (vec!["a", "b"], true));
        let (page, more) = undo_writes(current, undo, 4);
        assert_eq!((keys(&page), more), (vec!["a", "b", "c", "d"], false));
    }
}
