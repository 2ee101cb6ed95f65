//! The edge's objects by number, and its sockets' client addresses, without
//! I/O. An object's number is what the edge and its workers call it over
//! IPC; the table finds it by namespace and id.

use super::object::{worker_for, Object};
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use torpor_objects::ids::ObjectId;

/// An object's number is its place in the table in the low 24 bits and
/// the place's generation in the high 8: a place is reused once its object
/// is forgotten, and a late message naming the previous one must not reach
/// the new one.
const PLACE_BITS: u32 = 24;
const PLACE_MASK: u32 = (1 << PLACE_BITS) - 1;

#[derive(Default)]
struct Place {
    generation: u8,
    object: Option<Object>,
}

#[derive(Default)]
pub(crate) struct ObjectTable {
    places: Vec<Place>,
    /// Places whose object was forgotten.
    free: Vec<u32>,
    index: HashMap<(Arc<str>, ObjectId), u32>,
}

fn number_of(place: u32, generation: u8) -> u32 {
    (u32::from(generation) << PLACE_BITS) | place
}

impl ObjectTable {
    pub(crate) fn get(&self, object: u32) -> Option<&Object> {
        let place = self.places.get((object & PLACE_MASK) as usize)?;
        (number_of(object & PLACE_MASK, place.generation) == object)
            .then_some(place.object.as_ref())
            .flatten()
    }

    pub(crate) fn get_mut(&mut self, object: u32) -> Option<&mut Object> {
        let place = self.places.get_mut((object & PLACE_MASK) as usize)?;
        (number_of(object & PLACE_MASK, place.generation) == object)
            .then_some(place.object.as_mut())
            .flatten()
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
            if let Some(o) = self.get_mut(object) {
                if o.name.is_none() {
                    o.name = name.map(Box::from);
                }
            }
            return object;
        }
        let worker = worker_for(&id, workers);
        let object = Object::new(key.0.clone(), class, id, name.map(Box::from), worker);
        let number = match self.free.pop() {
            Some(free) => {
                let place = &mut self.places[free as usize];
                place.generation = place.generation.wrapping_add(1);
                place.object = Some(object);
                number_of(free, place.generation)
            }
            None => {
                let place = self.places.len() as u32;
                self.places.push(Place {
                    generation: 0,
                    object: Some(object),
                });
                number_of(place, 0)
            }
        };
        self.index.insert(key, number);
        number
    }

    /// Forgets an object: its number no longer names anything.
    pub(crate) fn forget(&mut self, object: u32) {
        if self.get(object).is_none() {
            return;
        }
        let place = object & PLACE_MASK;
        if let Some(gone) = self.places[place as usize].object.take() {
            self.index.remove(&(gone.namespace, gone.id));
            self.free.push(place);
        }
    }

    /// Objects held.
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    /// Each object with its number.
    pub(crate) fn numbered(&self) -> impl Iterator<Item = (u32, &Object)> {
        self.places.iter().enumerate().filter_map(|(place, p)| {
            let number = number_of(place as u32, p.generation);
            p.object.as_ref().map(|o| (number, o))
        })
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Object> {
        self.places.iter().filter_map(|p| p.object.as_ref())
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Object> {
        self.places.iter_mut().filter_map(|p| p.object.as_mut())
    }

    /// A table holding `objects` under the numbers they had.
    pub(crate) fn from_numbered(objects: Vec<(u32, Object)>) -> Result<ObjectTable, String> {
        let mut table = ObjectTable::default();
        for (number, object) in objects {
            let place = (number & PLACE_MASK) as usize;
            if table.places.len() <= place {
                table.places.resize_with(place + 1, Place::default);
            }
            let slot = &mut table.places[place];
            if slot.object.is_some() {
                return Err(format!("two objects numbered at place {place}"));
            }
            slot.generation = (number >> PLACE_BITS) as u8;
            table
                .index
                .insert((object.namespace.clone(), object.id), number);
            slot.object = Some(object);
        }
        table.free = (0..table.places.len() as u32)
            .filter(|&p| table.places[p as usize].object.is_none())
            .collect();
        Ok(table)
    }

    /// Numbers of the objects on `worker`.
    pub(crate) fn on_worker(&self, worker: usize) -> Vec<u32> {
        self.numbered()
            .filter(|(_, o)| o.worker as usize == worker)
            .map(|(number, _)| number)
            .collect()
    }

    /// The worker that serves `object`.
    pub(crate) fn worker_of(&self, object: u32) -> usize {
        self.get(object).map_or(usize::MAX, |o| o.worker as usize)
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
    fn a_forgotten_objects_number_names_nothing_even_once_its_place_is_reused() {
        let mut table = ObjectTable::default();
        let id = |byte: &str| ObjectId::from_hex(&byte.repeat(32)).unwrap();
        let old = table.number(Arc::from("ns"), Arc::from("C"), id("01"), None, 2);
        table.forget(old);
        assert!(table.get(old).is_none());
        assert_eq!(table.find("ns", id("01")), None);
        assert_eq!(table.len(), 0);
        let new = table.number(Arc::from("ns"), Arc::from("C"), id("02"), None, 2);
        assert_eq!(new & PLACE_MASK, old & PLACE_MASK, "the place is reused");
        assert_ne!(new, old);
        assert!(table.get(old).is_none(), "a late message names nothing");
        assert_eq!(table.get(new).map(|o| o.id), Some(id("02")));
        let rebuilt = ObjectTable::from_numbered(vec![(
            new,
            Object::new(Arc::from("ns"), Arc::from("C"), id("02"), None, 0),
        )])
        .unwrap();
        assert_eq!(rebuilt.find("ns", id("02")), Some(new));
        assert!(rebuilt.get(old).is_none());
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
