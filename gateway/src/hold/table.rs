//! The edge's objects by number, and its sockets' client addresses, without
//! I/O. An object's number is what the edge and its workers call it over
//! IPC; the table finds it by namespace and id.

use super::object::{worker_for, Object};
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use torpor_objects::ids::ObjectId;

#[derive(Default)]
pub(crate) struct ObjectTable {
    /// Kept for the node's life: their usage counts live here until the
    /// persisted ledger has them.
    objects: Vec<Object>,
    index: HashMap<(Arc<str>, ObjectId), u32>,
}

impl ObjectTable {
    pub(crate) fn get(&self, object: u32) -> Option<&Object> {
        self.objects.get(object as usize)
    }

    pub(crate) fn get_mut(&mut self, object: u32) -> Option<&mut Object> {
        self.objects.get_mut(object as usize)
    }

    /// The object's number, if the edge knows it.
    pub(crate) fn find(&self, namespace: &str, id: ObjectId) -> Option<u32> {
        self.index.get(&(Arc::from(namespace), id)).copied()
    }

    /// The object's number, numbering it if new; learns its name if it
    /// was known only by id.
    pub(crate) fn number(
        &mut self,
        namespace: Arc<str>,
        class: Arc<str>,
        id: ObjectId,
        name: Option<&str>,
        workers: u16,
    ) -> u32 {
        let key = (namespace, id);
        if let Some(&object) = self.index.get(&key) {
            let o = &mut self.objects[object as usize];
            if o.name.is_none() {
                o.name = name.map(Box::from);
            }
            return object;
        }
        let worker = worker_for(&id, workers);
        let object = self.objects.len() as u32;
        self.objects.push(Object::new(
            key.0.clone(),
            class,
            id,
            name.map(Box::from),
            worker,
        ));
        self.index.insert(key, object);
        object
    }

    /// A table holding `objects`, numbered by their place.
    pub(crate) fn from_objects(objects: Vec<Object>) -> ObjectTable {
        let index = objects
            .iter()
            .enumerate()
            .map(|(number, o)| ((o.namespace.clone(), o.id), number as u32))
            .collect();
        ObjectTable { objects, index }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Object> {
        self.objects.iter()
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Object> {
        self.objects.iter_mut()
    }

    /// Numbers of the objects on `worker`.
    pub(crate) fn on_worker(&self, worker: usize) -> Vec<u32> {
        (0..self.objects.len() as u32)
            .filter(|&o| self.objects[o as usize].worker as usize == worker)
            .collect()
    }

    /// The worker that serves `object`.
    pub(crate) fn worker_of(&self, object: u32) -> usize {
        self.objects
            .get(object as usize)
            .map_or(usize::MAX, |o| o.worker as usize)
    }
}

/// Listed sockets per client address, for the per-address limit. Only
/// kept while a limit is set: most nodes run without one, and an idle
/// socket should not carry an address it never uses.
#[derive(Default)]
pub(crate) struct Addresses {
    per_address: HashMap<IpAddr, u32>,
    /// Each socket's client address, by slot.
    peers: HashMap<u32, IpAddr>,
}

impl Addresses {
    /// Listed sockets from `peer`.
    pub(crate) fn held(&self, peer: IpAddr) -> u32 {
        self.per_address.get(&peer).copied().unwrap_or(0)
    }

    /// Slot `slot` belongs to `peer`.
    pub(crate) fn remember(&mut self, slot: u32, peer: IpAddr) {
        self.peers.insert(slot, peer);
    }

    pub(crate) fn forget(&mut self, slot: u32) {
        if !self.peers.is_empty() {
            self.peers.remove(&slot);
        }
    }

    /// Each socket's address, as plain data.
    pub(crate) fn peers(&self) -> Vec<(u32, IpAddr)> {
        self.peers
            .iter()
            .map(|(slot, peer)| (*slot, *peer))
            .collect()
    }

    pub(crate) fn listed(&mut self, slot: u32) {
        if let Some(&peer) = self.peers.get(&slot) {
            *self.per_address.entry(peer).or_insert(0) += 1;
        }
    }

    pub(crate) fn unlisted(&mut self, slot: u32) {
        if let Some(&peer) = self.peers.get(&slot) {
            if let Entry::Occupied(mut held) = self.per_address.entry(peer) {
                *held.get_mut() -= 1;
                if *held.get() == 0 {
                    held.remove();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_keeps_its_number_and_learns_its_name() {
        let mut table = ObjectTable::default();
        let id = ObjectId::from_hex(&"ab".repeat(32)).unwrap();
        let a = table.number(Arc::from("ns"), Arc::from("C"), id, None, 4);
        let b = table.number(Arc::from("ns"), Arc::from("C"), id, Some("room"), 4);
        assert_eq!(a, b);
        assert_eq!(table.get(a).and_then(|o| o.name.as_deref()), Some("room"));
        assert_eq!(table.find("ns", id), Some(a));
        let other = table.number(Arc::from("other"), Arc::from("C"), id, None, 4);
        assert_ne!(a, other, "namespaces do not share objects");
    }

    #[test]
    fn an_address_counts_only_listed_sockets_and_forgets_at_zero() {
        let mut addresses = Addresses::default();
        let peer: IpAddr = "127.0.0.7".parse().unwrap();
        addresses.remember(1, peer);
        addresses.remember(2, peer);
        assert_eq!(addresses.held(peer), 0, "reserved, not listed");
        addresses.listed(1);
        addresses.listed(2);
        assert_eq!(addresses.held(peer), 2);
        addresses.unlisted(1);
        addresses.unlisted(2);
        assert_eq!(addresses.held(peer), 0);
        assert!(addresses.per_address.is_empty());
        addresses.forget(1);
        addresses.forget(2);
        assert!(addresses.peers.is_empty());
    }
}
