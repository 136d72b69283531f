//! The newest state of recently written or read keys, as sled holds it: reads of hot keys
//! (a namespace every create checks, a pod between its kubelet's writes) skip sled's tree
//! walk and record decode.
//!
//! Invariant (kept by [`super::overlay::Overlay`], which owns this): an entry is the state
//! sled holds for its key. Entries come from writes leaving the overlay (sled has just
//! taken them) and from sled reads made while no write was queued; a newer write of the key
//! is always found in the overlay first, and replaces the entry when it leaves.

use super::Record;
use std::collections::{HashMap, VecDeque};

/// How many keys are kept. A pod's record is a few KiB, so this is a few MiB at most.
pub(super) const CAPACITY: usize = 4096;

#[derive(Debug)]
pub(super) struct Recent {
    slots: HashMap<Vec<u8>, Slot>,
    /// Keys in insertion order, for eviction: the oldest goes first unless it was read since
    /// it was last passed over (a second chance), so a key read on every request stays.
    order: VecDeque<Vec<u8>>,
    capacity: usize,
}

#[derive(Debug)]
struct Slot {
    /// `None`: the key is deleted.
    record: Option<Record>,
    referenced: bool,
}

impl Recent {
    pub(super) fn new(capacity: usize) -> Recent {
        Recent {
            slots: HashMap::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    /// `Some(None)`: the key is known to be absent.
    pub(super) fn get(&mut self, rkey: &[u8]) -> Option<&Option<Record>> {
        let slot = self.slots.get_mut(rkey)?;
        slot.referenced = true;
        Some(&slot.record)
    }

    pub(super) fn put(&mut self, rkey: Vec<u8>, record: Option<Record>) {
        if let Some(slot) = self.slots.get_mut(&rkey) {
            slot.record = record;
            return;
        }
        self.slots.insert(
            rkey.clone(),
            Slot {
                record,
                referenced: false,
            },
        );
        self.order.push_back(rkey);
        while self.slots.len() > self.capacity {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            match self.slots.get_mut(&oldest) {
                Some(slot) if slot.referenced => {
                    slot.referenced = false;
                    self.order.push_back(oldest);
                }
                _ => {
                    self.slots.remove(&oldest);
                }
            }
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::super::wal::put_entry;
    use super::*;

    fn rec(key: &str, rev: u64) -> Option<Record> {
        put_entry(rev, key, b"{}").record()
    }

    fn rev(r: &mut Recent, key: &str) -> Option<u64> {
        r.get(key.as_bytes())?.as_ref().map(|r| r.mod_revision)
    }

    #[test]
    fn a_put_replaces_the_keys_state_and_deletes_are_remembered() {
        let mut r = Recent::new(4);
        r.put(b"a".to_vec(), rec("a", 1));
        r.put(b"a".to_vec(), rec("a", 2));
        assert_eq!(rev(&mut r, "a"), Some(2));
        r.put(b"a".to_vec(), None);
        assert!(matches!(r.get(b"a"), Some(None)));
        assert!(r.get(b"b").is_none());
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn the_oldest_unread_key_goes_first_and_a_read_key_stays() {
        let mut r = Recent::new(2);
        r.put(b"hot".to_vec(), rec("hot", 1));
        r.put(b"x".to_vec(), rec("x", 2));
        assert_eq!(rev(&mut r, "hot"), Some(1));
        r.put(b"y".to_vec(), rec("y", 3));
        // "hot" was read, so "x" went.
        assert_eq!(r.len(), 2);
        assert!(r.get(b"x").is_none());
        assert_eq!(rev(&mut r, "hot"), Some(1));
        for (i, k) in ["p", "q", "s", "t"].iter().enumerate() {
            r.put(k.as_bytes().to_vec(), rec(k, 10 + i as u64));
            assert_eq!(r.len(), 2);
        }
        // Unread since its second chance, "hot" went too.
        assert!(r.get(b"hot").is_none());
    }
}
