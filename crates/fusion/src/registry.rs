//! Entities by id, stored in slots. Cells refer to their members by slot
//! (four bytes, no string compares on the hot path); a hash index maps ids
//! to slots. Order-sensitive outputs (snapshots, digests) sort by id.

use std::collections::HashMap;
use std::sync::Arc;

/// A slot number.
pub(crate) type Slot = u32;

/// One slot: empty, or an id with its entity.
pub(crate) type Entry<T> = Option<(Arc<str>, T)>;

#[derive(Debug)]
pub(crate) struct Registry<T> {
    slots: Vec<Option<(Arc<str>, T)>>,
    index: HashMap<Arc<str>, Slot, ahash::RandomState>,
    free: Vec<Slot>,
}

impl<T> Default for Registry<T> {
    fn default() -> Self {
        Registry {
            slots: Vec::new(),
            index: HashMap::default(),
            free: Vec::new(),
        }
    }
}

impl<T> Registry<T> {
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn slot_of(&self, id: &str) -> Option<Slot> {
        self.index.get(id).copied()
    }

    pub fn get(&self, id: &str) -> Option<&T> {
        self.at(self.slot_of(id)?)
    }

    pub fn at(&self, slot: Slot) -> Option<&T> {
        self.slots.get(slot as usize)?.as_ref().map(|(_, v)| v)
    }

    pub fn at_mut(&mut self, slot: Slot) -> Option<&mut T> {
        self.slots.get_mut(slot as usize)?.as_mut().map(|(_, v)| v)
    }

    /// The id and value in `slot`.
    pub fn entry_at(&self, slot: Slot) -> Option<(&Arc<str>, &T)> {
        self.slots.get(slot as usize)?.as_ref().map(|(k, v)| (k, v))
    }

    /// Inserts or replaces; returns the slot.
    pub fn insert(&mut self, id: &str, value: T) -> Slot {
        if let Some(slot) = self.slot_of(id) {
            if let Some(entry) = self.slots.get_mut(slot as usize) {
                let key = entry.take().map_or_else(|| Arc::from(id), |(k, _)| k);
                *entry = Some((key, value));
            }
            return slot;
        }
        let key: Arc<str> = Arc::from(id);
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = Some((key.clone(), value));
                s
            }
            None => {
                let s = Slot::try_from(self.slots.len()).unwrap_or(Slot::MAX);
                self.slots.push(Some((key.clone(), value)));
                s
            }
        };
        self.index.insert(key, slot);
        slot
    }

    /// Removes `id`; returns its slot, shared id and value.
    pub fn remove(&mut self, id: &str) -> Option<(Slot, Arc<str>, T)> {
        let slot = self.index.remove(id)?;
        let (key, value) = self.slots.get_mut(slot as usize)?.take()?;
        self.free.push(slot);
        Some((slot, key, value))
    }

    /// Every entry, in slot order (not deterministic across histories:
    /// use [`Registry::sorted`] where order shows).
    pub fn iter(&self) -> impl Iterator<Item = (Slot, &Arc<str>, &T)> {
        self.slots.iter().enumerate().filter_map(|(i, e)| {
            e.as_ref()
                .map(|(k, v)| (Slot::try_from(i).unwrap_or(Slot::MAX), k, v))
        })
    }

    /// Its slots (with the holes) and free list, for a checkpoint.
    pub fn parts(&self) -> (&[Entry<T>], &[Slot]) {
        (&self.slots, &self.free)
    }

    /// A registry from [`Registry::parts`]: the same slots, so everything
    /// that refers to an entity by slot (and every order by slot) is kept.
    pub fn from_parts(slots: Vec<Entry<T>>, free: Vec<Slot>) -> Registry<T> {
        let mut index = HashMap::default();
        for (i, e) in slots.iter().enumerate() {
            if let Some((k, _)) = e {
                index.insert(k.clone(), Slot::try_from(i).unwrap_or(Slot::MAX));
            }
        }
        Registry { slots, index, free }
    }

    /// Every entry, sorted by id.
    pub fn sorted(&self) -> Vec<(&Arc<str>, &T)> {
        let mut all: Vec<(&Arc<str>, &T)> = self.iter().map(|(_, k, v)| (k, v)).collect();
        all.sort_unstable_by(|a, b| a.0.cmp(b.0));
        all
    }
}
