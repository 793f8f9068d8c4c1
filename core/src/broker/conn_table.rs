//! The table of open connections: the connections themselves in a slab, found by the driver's
//! `ConnId` through an ordered index.
//!
//! Why not a `BTreeMap<ConnId, Connection>`: a B-tree node holds eleven values inline, and
//! ids that arrive in increasing order (as a driver's counter or fresh slab keys do) leave
//! nodes a little over half full, so each connection cost almost twice its size. The index
//! maps an id to a slab key, a few bytes an entry, and the slab holds each connection once,
//! reusing the places of closed ones. The index is ordered, so walking every connection goes by
//! `ConnId` as before: nothing observable depends on where a connection sits in the slab.
//!
//! The last id looked up is remembered with its slab key: handling one packet or one delivery
//! looks up the same connection several times in a row (its window, its output's back
//! pressure, its packet size limit, the write), and each B-tree search costs more than the
//! rest of such a lookup.

use super::ConnId;
use super::connection::Connection;
use slab::Slab;
use std::cell::Cell;
use std::collections::BTreeMap;

#[derive(Debug, Default)]
pub(crate) struct ConnTable {
    slots: Slab<Connection>,
    index: BTreeMap<ConnId, usize>,
    /// The id last found and its slab key: always an entry of `index` (`remove` forgets it).
    last: Cell<Option<(ConnId, usize)>>,
}

impl ConnTable {
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    #[inline]
    pub(crate) fn contains_key(&self, id: &ConnId) -> bool {
        self.index.contains_key(id)
    }

    /// The slab key of `id`, from the remembered lookup or the index.
    #[inline]
    fn slot(&self, id: &ConnId) -> Option<usize> {
        if let Some((last, slot)) = self.last.get()
            && last == *id
        {
            return Some(slot);
        }
        let slot = *self.index.get(id)?;
        self.last.set(Some((*id, slot)));
        Some(slot)
    }

    #[inline]
    pub(crate) fn get(&self, id: &ConnId) -> Option<&Connection> {
        self.slot(id).and_then(|slot| self.slots.get(slot))
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, id: &ConnId) -> Option<&mut Connection> {
        self.slot(id).and_then(|slot| self.slots.get_mut(slot))
    }

    /// Adds a connection, replacing (and returning) one with the same id.
    pub(crate) fn insert(&mut self, id: ConnId, conn: Connection) -> Option<Connection> {
        match self.index.get(&id) {
            Some(&slot) => self
                .slots
                .get_mut(slot)
                .map(|old| std::mem::replace(old, conn)),
            None => {
                let slot = self.slots.insert(conn);
                self.index.insert(id, slot);
                None
            }
        }
    }

    pub(crate) fn remove(&mut self, id: &ConnId) -> Option<Connection> {
        if self.last.get().is_some_and(|(last, _)| last == *id) {
            self.last.set(None);
        }
        let slot = self.index.remove(id)?;
        self.slots.try_remove(slot)
    }

    /// The ids of every connection, in increasing order.
    pub(crate) fn ids(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.index.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::{ListenerId, Time};

    fn conn(listener: u32) -> Connection {
        Connection::new(ListenerId(listener), None, Time::ZERO)
    }

    #[test]
    fn finds_connections_by_id_after_removals_reuse_slots() {
        let mut t = ConnTable::default();
        for i in 0..5 {
            assert!(t.insert(ConnId(100 - i), conn(i as u32)).is_none());
        }
        assert_eq!(
            t.remove(&ConnId(98)).map(|c| c.listener),
            Some(ListenerId(2))
        );
        assert!(t.remove(&ConnId(98)).is_none());
        // The freed slot goes to the next connection; lookups still go by id.
        t.insert(ConnId(7), conn(7));
        assert_eq!(t.len(), 5);
        assert_eq!(t.get(&ConnId(7)).map(|c| c.listener), Some(ListenerId(7)));
        assert_eq!(t.get(&ConnId(99)).map(|c| c.listener), Some(ListenerId(1)));
        assert!(t.get(&ConnId(98)).is_none());
        assert!(t.contains_key(&ConnId(96)));
        assert!(!t.contains_key(&ConnId(98)));
    }

    /// A removed connection is not found through the remembered lookup, even once its slab
    /// key serves another connection.
    #[test]
    fn a_remembered_lookup_never_outlives_its_connection() {
        let mut t = ConnTable::default();
        t.insert(ConnId(1), conn(1));
        t.insert(ConnId(2), conn(2));
        assert_eq!(t.get(&ConnId(1)).map(|c| c.listener), Some(ListenerId(1)));
        assert!(t.remove(&ConnId(1)).is_some());
        // ConnId(3) takes the slot ConnId(1) had.
        t.insert(ConnId(3), conn(3));
        assert!(t.get(&ConnId(1)).is_none());
        assert!(t.get_mut(&ConnId(1)).is_none());
        assert_eq!(t.get(&ConnId(3)).map(|c| c.listener), Some(ListenerId(3)));
        assert_eq!(t.get(&ConnId(2)).map(|c| c.listener), Some(ListenerId(2)));
        assert_eq!(t.get(&ConnId(3)).map(|c| c.listener), Some(ListenerId(3)));
        // Replacing a connection under the same id keeps the id's slot.
        t.insert(ConnId(3), conn(4));
        assert_eq!(t.get(&ConnId(3)).map(|c| c.listener), Some(ListenerId(4)));
    }

    #[test]
    fn ids_come_in_increasing_order_whatever_the_slots() {
        let mut t = ConnTable::default();
        for id in [5, 3, 9, 1] {
            t.insert(ConnId(id), conn(0));
        }
        t.remove(&ConnId(3));
        t.insert(ConnId(4), conn(0));
        let ids: Vec<u64> = t.ids().map(|c| c.0).collect();
        assert_eq!(ids, vec![1, 4, 5, 9]);
    }

    #[test]
    fn inserting_a_known_id_replaces_the_connection() {
        let mut t = ConnTable::default();
        t.insert(ConnId(1), conn(1));
        let old = t.insert(ConnId(1), conn(2));
        assert_eq!(old.map(|c| c.listener), Some(ListenerId(1)));
        assert_eq!(t.len(), 1);
        assert_eq!(t.get(&ConnId(1)).map(|c| c.listener), Some(ListenerId(2)));
    }
}
