//! The messages a session has in flight, found by packet id.
//!
//! Packet ids are handed out in turn (the next unused one after the last), so the ids in flight
//! at one time are nearly always a run of consecutive numbers. A table indexed by the id modulo
//! its size puts such a run in consecutive slots, each at its own index: finding, adding and
//! removing a message touch one slot each, where a B-tree searched its nodes, shifted their
//! entries (a delivery each, about 100 bytes) on every acknowledgement and allocated and freed
//! nodes as the run moved on. Ids that do meet at an index (a message left unacknowledged while
//! the ids wrap around) take the next free slot, the one farther from its own index first
//! (Robin Hood hashing), so a search can stop at the first entry nearer to its index than the
//! sought id would be, and a removal moves back only the entries after it that are not at
//! their own index. The table is at most three quarters full.
//!
//! Iteration follows the slots, which depend only on the ids and the order of the operations,
//! never on addresses or hashing, so it is deterministic; callers that need an order (that of
//! first transmission) sort by it.

use crate::codec::PacketId;

/// The fewest slots a table has once it holds anything.
const MIN_SLOTS: usize = 8;

/// Tables up to this many slots never shrink: a window that fills and empties in turn keeps
/// its slots instead of reallocating them each time.
const KEEP_SLOTS: usize = 64;

#[derive(Debug)]
pub(crate) struct InflightTable<V> {
    /// Empty, or a power of two long.
    slots: Vec<Option<(PacketId, V)>>,
    len: usize,
}

impl<V> InflightTable<V> {
    pub(crate) const fn new() -> Self {
        InflightTable {
            slots: Vec::new(),
            len: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn mask(&self) -> usize {
        self.slots.len().wrapping_sub(1)
    }

    /// How far slot `at` is past the index of `id`. Only for a table with slots.
    fn distance(&self, id: PacketId, at: usize) -> usize {
        at.wrapping_sub(usize::from(id.get())) & self.mask()
    }

    fn find(&self, id: PacketId) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.mask();
        let mut i = usize::from(id.get()) & mask;
        let mut dist = 0;
        loop {
            match &self.slots[i] {
                None => return None,
                Some((k, _)) if *k == id => return Some(i),
                // It would have taken this slot from an entry nearer to its own index.
                Some((k, _)) if self.distance(*k, i) < dist => return None,
                Some(_) => {
                    i = (i + 1) & mask;
                    dist += 1;
                }
            }
        }
    }

    pub(crate) fn contains(&self, id: PacketId) -> bool {
        self.find(id).is_some()
    }

    pub(crate) fn get(&self, id: PacketId) -> Option<&V> {
        let i = self.find(id)?;
        self.slots[i].as_ref().map(|(_, v)| v)
    }

    pub(crate) fn get_mut(&mut self, id: PacketId) -> Option<&mut V> {
        let i = self.find(id)?;
        self.slots[i].as_mut().map(|(_, v)| v)
    }

    /// Adds `value` under `id`, replacing what the id had.
    pub(crate) fn insert(&mut self, id: PacketId, value: V) {
        if let Some(v) = self.get_mut(id) {
            *v = value;
            return;
        }
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.resize((self.slots.len() * 2).max(MIN_SLOTS));
        }
        self.put(id, value);
        self.len += 1;
    }

    /// Stores an id known to be absent: it takes the slot of the first entry nearer to its own
    /// index than the id is, and that entry moves on the same way.
    fn put(&mut self, id: PacketId, value: V) {
        let mask = self.mask();
        let mut i = usize::from(id.get()) & mask;
        let mut carried = (id, value);
        let mut dist = 0;
        loop {
            let resident = match &self.slots[i] {
                None => {
                    self.slots[i] = Some(carried);
                    return;
                }
                Some((k, _)) => self.distance(*k, i),
            };
            if resident < dist {
                if let Some(entry) = self.slots[i].as_mut() {
                    std::mem::swap(entry, &mut carried);
                }
                dist = resident;
            }
            i = (i + 1) & mask;
            dist += 1;
        }
    }

    pub(crate) fn remove(&mut self, id: PacketId) -> Option<V> {
        let mut hole = self.find(id)?;
        let (_, value) = self.slots[hole].take()?;
        self.len -= 1;
        // The entries after it that are past their own index move back one slot each, up to
        // an empty slot or an entry at its own index.
        let mask = self.mask();
        loop {
            let next = (hole + 1) & mask;
            match &self.slots[next] {
                Some((k, _)) if self.distance(*k, next) > 0 => {
                    self.slots[hole] = self.slots[next].take();
                    hole = next;
                }
                _ => break,
            }
        }
        // A table that grew for a large window gives most of it back once the window drains;
        // the margin between shrinking and growing again is many operations wide.
        if self.slots.len() > KEEP_SLOTS && self.len * 32 < self.slots.len() {
            self.resize(self.slots.len() / 2);
        }
        Some(value)
    }

    fn resize(&mut self, size: usize) {
        let empty = std::iter::repeat_with(|| None).take(size).collect();
        let old = std::mem::replace(&mut self.slots, empty);
        for (id, value) in old.into_iter().flatten() {
            self.put(id, value);
        }
    }

    /// Every entry, in slot order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (PacketId, &V)> {
        self.slots.iter().flatten().map(|(id, v)| (*id, v))
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, v)| v)
    }

    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.slots.iter_mut().flatten().map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn id(n: u16) -> PacketId {
        PacketId::new(n).expect("not 0")
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Insert the next id after the last inserted, as the broker hands them out.
        InsertNext,
        Insert(u16),
        Remove(u16),
        /// Remove the entry that has been in the table longest.
        RemoveOldest,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => Just(Op::InsertNext),
            1 => (1..=u16::MAX).prop_map(Op::Insert),
            1 => (1..=u16::MAX).prop_map(Op::Remove),
            3 => Just(Op::RemoveOldest),
        ]
    }

    /// Every lookup agrees with a B-tree map after each operation, and the table never fills.
    fn check(t: &InflightTable<u32>, model: &BTreeMap<PacketId, u32>) {
        assert_eq!(t.len(), model.len());
        assert!(t.slots.is_empty() || t.len() < t.slots.len());
        let mut all: Vec<(PacketId, u32)> = t.iter().map(|(k, v)| (k, *v)).collect();
        all.sort_unstable();
        let expected: Vec<(PacketId, u32)> = model.iter().map(|(k, v)| (*k, *v)).collect();
        assert_eq!(all, expected);
        for (k, v) in model {
            assert_eq!(t.get(*k), Some(v));
        }
    }

    proptest! {
        #[test]
        fn behaves_as_a_map(ops in proptest::collection::vec(op(), 1..400), start in 1..=u16::MAX) {
            let mut t = InflightTable::new();
            let mut model = BTreeMap::new();
            let mut order = std::collections::VecDeque::new();
            let mut next = start;
            for (n, op) in ops.into_iter().enumerate() {
                let value = n as u32;
                match op {
                    Op::InsertNext | Op::Insert(_) => {
                        let k = match op {
                            Op::Insert(k) => id(k),
                            _ => {
                                next = next.checked_add(1).unwrap_or(1);
                                id(next)
                            }
                        };
                        t.insert(k, value);
                        if model.insert(k, value).is_none() {
                            order.push_back(k);
                        }
                    }
                    Op::Remove(k) => {
                        prop_assert_eq!(t.remove(id(k)), model.remove(&id(k)));
                        order.retain(|o| *o != id(k));
                    }
                    Op::RemoveOldest => {
                        if let Some(k) = order.pop_front() {
                            prop_assert_eq!(t.remove(k), model.remove(&k));
                        }
                    }
                }
                check(&t, &model);
                prop_assert_eq!(t.contains(id(next)), model.contains_key(&id(next)));
            }
        }
    }

    /// A message left in flight while the ids wrap around shares its slot with a later id: both
    /// stay found, and removing either leaves the other found.
    #[test]
    fn colliding_ids_stay_found() {
        let mut t = InflightTable::new();
        t.insert(id(5), 5);
        for n in 6..=12 {
            t.insert(id(n), u32::from(n));
        }
        let size = t.slots.len() as u16;
        let wrapped = 5 + size;
        t.insert(id(wrapped), u32::from(wrapped));
        assert_eq!(t.get(id(wrapped)), Some(&u32::from(wrapped)));
        assert_eq!(t.remove(id(5)), Some(5));
        assert_eq!(t.get(id(wrapped)), Some(&u32::from(wrapped)));
        for n in 6..=12 {
            assert_eq!(t.get(id(n)), Some(&u32::from(n)));
        }
        assert_eq!(t.remove(id(wrapped)), Some(u32::from(wrapped)));
        assert_eq!(t.get(id(5)), None);
    }

    /// A table emptied after a large window gives most of its memory back; a small one keeps
    /// its slots.
    #[test]
    fn shrinks_when_mostly_empty() {
        let mut t = InflightTable::new();
        for n in 1..=1000 {
            t.insert(id(n), u32::from(n));
        }
        assert!(t.slots.len() >= 1024);
        for n in 1..=1000 {
            t.remove(id(n));
        }
        assert_eq!(t.len(), 0);
        assert_eq!(t.slots.len(), KEEP_SLOTS);
        for n in 1..=20 {
            t.insert(id(n), u32::from(n));
        }
        let slots = t.slots.len();
        for n in 1..=20 {
            t.remove(id(n));
        }
        assert_eq!(t.slots.len(), slots);
    }
}
