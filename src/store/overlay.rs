//! Writes that are in the WAL (or on their way there) but not yet in sled.
//!
//! Reads consult this before sled, so the store reads its own writes while sled lags behind.
//! Invariant: a write enters the overlay (under the writer lock) before anything can see its
//! revision, and leaves only after sled holds it; so for any key, either the overlay has the
//! newest write, or sled does and no write of that key is pending. Writes that left, and
//! sled reads made while no write was queued, are kept in [`Recent`]: sled's state of each
//! of its keys that has no write pending (one that has is always looked up here first).

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;

use super::recent::{self, Recent};
use super::wal::Entry;
use super::{codec, Record};

/// The newest pending write of one key.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    pub revision: u64,
    /// `None`: the key is being deleted.
    pub record: Option<Record>,
}

#[derive(Debug)]
pub(super) struct Overlay {
    /// Keyed by the sled record key, so it merges with a sled scan in the same order.
    records: BTreeMap<Vec<u8>, Pending>,
    /// Every write not yet in sled, consecutive revisions, oldest first.
    entries: VecDeque<Entry>,
    /// What sled holds for keys written or read lately.
    recent: Recent,
    /// Writes pushed so far: a sled read is remembered only if none was pushed since the
    /// read began ([`Overlay::remember`]).
    pushes: u64,
}

impl Default for Overlay {
    fn default() -> Overlay {
        Overlay {
            records: BTreeMap::new(),
            entries: VecDeque::new(),
            recent: Recent::new(recent::CAPACITY),
            pushes: 0,
        }
    }
}

/// Where a key's newest state is, as the overlay knows it.
pub(super) enum Lookup {
    /// A write not yet in sled.
    Pending(Pending),
    /// sled's state, remembered (`None`: absent).
    InSled(Option<Record>),
    /// Ask sled; remember the answer with [`Overlay::remember`] and this ticket.
    Unknown(ReadTicket),
}

/// When a sled read began, in writes pushed.
#[derive(Clone, Copy)]
pub(super) struct ReadTicket(u64);

impl Overlay {
    /// The newest state of `rkey`, if the overlay has it.
    pub(super) fn find(&mut self, rkey: &[u8]) -> Lookup {
        if let Some(p) = self.records.get(rkey) {
            return Lookup::Pending(p.clone());
        }
        match self.recent.get(rkey) {
            Some(r) => Lookup::InSled(r.clone()),
            None => Lookup::Unknown(ReadTicket(self.pushes)),
        }
    }

    /// Keeps what sled answered for `rkey` to a read begun at `ticket`, unless a write was
    /// pushed since: the answer may then be older than sled's state once that write lands
    /// (had no write been pushed, nothing could have changed the key in sled meanwhile).
    pub(super) fn remember(&mut self, rkey: &[u8], ticket: ReadTicket, record: &Record) {
        if ticket.0 == self.pushes {
            self.recent.put(rkey.to_vec(), Some(record.clone()));
        }
    }

    pub(super) fn push(&mut self, entry: Entry) {
        self.pushes += 1;
        let rkey = codec::record_key(&entry.event.key);
        self.records.insert(
            rkey,
            Pending {
                revision: entry.revision(),
                record: entry.record(),
            },
        );
        self.entries.push_back(entry);
    }

    /// Pending writes of keys starting with `rprefix`, from `start` on, in key order.
    pub(super) fn range(&self, start: Bound<Vec<u8>>, rprefix: &[u8]) -> Vec<(Vec<u8>, Pending)> {
        self.records
            .range((start, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(rprefix))
            .map(|(k, p)| (k.clone(), p.clone()))
            .collect()
    }

    /// Oldest revision not in sled yet.
    pub(super) fn first_revision(&self) -> Option<u64> {
        self.entries.front().map(Entry::revision)
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Up to `limit` entries with revisions in `from..=to`.
    pub(super) fn entries_between(&self, from: u64, to: u64, limit: usize) -> Vec<Entry> {
        let Some(first) = self.first_revision() else {
            return Vec::new();
        };
        let skip = usize::try_from(from.saturating_sub(first)).unwrap_or(usize::MAX);
        self.entries
            .iter()
            .skip(skip)
            .take_while(|e| e.revision() <= to)
            .take(limit)
            .cloned()
            .collect()
    }

    /// Drops entries up to `revision`, which sled now holds.
    pub(super) fn retire_through(&mut self, revision: u64) {
        while let Some(entry) = self.entries.front() {
            if entry.revision() > revision {
                break;
            }
            let rkey = codec::record_key(&entry.event.key);
            // A newer pending write of the same key stays.
            if self
                .records
                .get(&rkey)
                .is_some_and(|p| p.revision == entry.revision())
            {
                if let Some(p) = self.records.remove(&rkey) {
                    self.recent.put(rkey, p.record);
                }
            }
            self.entries.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::wal::put_entry;
    use super::*;

    #[test]
    fn retiring_keeps_a_newer_write_of_the_same_key() {
        let mut ov = Overlay::default();
        ov.push(put_entry(5, "a", b"1"));
        ov.push(put_entry(6, "b", b"1"));
        ov.push(put_entry(7, "a", b"2"));
        ov.retire_through(6);
        assert_eq!(ov.first_revision(), Some(7));
        assert_eq!(in_sled(&mut ov, "b"), Some(6));
        match ov.find(&codec::record_key("a")) {
            Lookup::Pending(a) => assert_eq!(a.revision, 7),
            _ => panic!("a is pending"),
        }
        ov.retire_through(7);
        assert_eq!(in_sled(&mut ov, "a"), Some(7));
        assert_eq!(ov.len(), 0);
    }

    /// The revision of `key` as remembered from sled, if it is.
    fn in_sled(ov: &mut Overlay, key: &str) -> Option<u64> {
        match ov.find(&codec::record_key(key)) {
            Lookup::InSled(r) => Some(r.expect("present").mod_revision),
            _ => None,
        }
    }

    #[test]
    fn a_sled_read_is_remembered_only_if_no_write_was_queued_meanwhile() {
        let mut ov = Overlay::default();
        let rec = |rev| put_entry(rev, "k", b"v").record().expect("a put");
        let Lookup::Unknown(ticket) = ov.find(&codec::record_key("k")) else {
            panic!("nothing known of k");
        };
        // A write of another key was queued while sled was read: sled's answer for "k"
        // could predate a write that was already on its way.
        ov.push(put_entry(3, "other", b"v"));
        ov.remember(&codec::record_key("k"), ticket, &rec(2));
        assert_eq!(in_sled(&mut ov, "k"), None);
        let Lookup::Unknown(ticket) = ov.find(&codec::record_key("k")) else {
            panic!("nothing known of k");
        };
        ov.remember(&codec::record_key("k"), ticket, &rec(2));
        assert_eq!(in_sled(&mut ov, "k"), Some(2));
        // A newer write is pending: it is what a read finds.
        ov.push(put_entry(4, "k", b"w"));
        assert!(matches!(
            ov.find(&codec::record_key("k")),
            Lookup::Pending(_)
        ));
    }

    #[test]
    fn entries_between_honours_bounds_and_limit() {
        let mut ov = Overlay::default();
        for rev in 10..=20 {
            ov.push(put_entry(rev, "k", b"v"));
        }
        let revs = |v: Vec<Entry>| v.iter().map(Entry::revision).collect::<Vec<_>>();
        assert_eq!(revs(ov.entries_between(12, 14, 100)), vec![12, 13, 14]);
        assert_eq!(revs(ov.entries_between(1, 11, 100)), vec![10, 11]);
        assert_eq!(revs(ov.entries_between(18, 99, 2)), vec![18, 19]);
        assert!(ov.entries_between(21, 30, 5).is_empty());
    }

    #[test]
    fn range_stays_inside_the_prefix() {
        let mut ov = Overlay::default();
        ov.push(put_entry(1, "a/1", b"v"));
        ov.push(put_entry(2, "a/2", b"v"));
        ov.push(put_entry(3, "b/1", b"v"));
        let got = ov.range(
            Bound::Excluded(codec::record_key("a/1")),
            &codec::record_key("a/"),
        );
        let keys: Vec<_> = got.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(keys, vec![codec::record_key("a/2")]);
    }
}
