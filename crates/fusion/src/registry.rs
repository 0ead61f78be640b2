//! Entities by id, stored in slots. Cells refer to their members by slot
//! (four bytes, no string compares on the hot path); a hash index maps ids
//! to slots. Order-sensitive outputs (snapshots, digests) sort by id.
//!
//! The index keeps a copy of every short id beside its slot, so that a
//! lookup compares against the table entry it has already loaded instead
//! of following the shared id to another place in memory (a cache miss
//! per event on a large picture). Longer ids are compared through their
//! slot.

use std::sync::Arc;

use hashbrown::HashTable;

/// A slot number.
pub(crate) type Slot = u32;

/// One slot: empty, or an id with its entity.
pub(crate) type Entry<T> = Option<(Arc<str>, T)>;

/// Ids up to this many bytes are kept in the index itself.
const INLINE: usize = 23;

/// An index entry: the slot and, for a short id, the id's bytes.
#[derive(Debug, Clone, Copy)]
struct Key {
    slot: Slot,
    /// The id's length, or `u8::MAX` for an id longer than [`INLINE`].
    len: u8,
    bytes: [u8; INLINE],
}

impl Key {
    fn new(id: &str, slot: Slot) -> Key {
        let mut bytes = [0; INLINE];
        let len = match bytes.get_mut(..id.len()) {
            Some(b) => {
                b.copy_from_slice(id.as_bytes());
                u8::try_from(id.len()).unwrap_or(u8::MAX)
            }
            None => u8::MAX,
        };
        Key { slot, len, bytes }
    }

    /// The id, if it is kept inline.
    fn inline(&self) -> Option<&[u8]> {
        self.bytes.get(..usize::from(self.len))
    }
}

#[derive(Debug)]
pub(crate) struct Registry<T> {
    slots: Vec<Option<(Arc<str>, T)>>,
    index: HashTable<Key>,
    hasher: ahash::RandomState,
    free: Vec<Slot>,
}

impl<T> Default for Registry<T> {
    fn default() -> Self {
        Registry {
            slots: Vec::new(),
            index: HashTable::new(),
            hasher: ahash::RandomState::new(),
            free: Vec::new(),
        }
    }
}

/// The id in `slot`.
fn id_at<T>(slots: &[Entry<T>], slot: Slot) -> Option<&str> {
    slots.get(slot as usize)?.as_ref().map(|(k, _)| &**k)
}

impl<T> Registry<T> {
    pub fn len(&self) -> usize {
        self.index.len()
    }

    fn hash(&self, id: &str) -> u64 {
        self.hasher.hash_one(id)
    }

    /// Whether the index entry `key` is `id`.
    fn is(slots: &[Entry<T>], key: &Key, id: &str) -> bool {
        match key.inline() {
            Some(short) => short == id.as_bytes(),
            None => id.len() > INLINE && id_at(slots, key.slot) == Some(id),
        }
    }

    pub fn slot_of(&self, id: &str) -> Option<Slot> {
        let slots = &self.slots;
        self.index
            .find(self.hash(id), |k| Self::is(slots, k, id))
            .map(|k| k.slot)
    }

    /// Adds `id` → `slot` to the index (`id` must not be there yet).
    fn index_insert(&mut self, id: &str, slot: Slot) {
        let hash = self.hash(id);
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.index.insert_unique(hash, Key::new(id, slot), |k| {
            id_at(slots, k.slot).map_or(0, |id| hasher.hash_one(id))
        });
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
                self.slots[s as usize] = Some((key, value));
                s
            }
            None => {
                let s = Slot::try_from(self.slots.len()).unwrap_or(Slot::MAX);
                self.slots.push(Some((key, value)));
                s
            }
        };
        self.index_insert(id, slot);
        slot
    }

    /// Removes `id`; returns its slot, shared id and value.
    pub fn remove(&mut self, id: &str) -> Option<(Slot, Arc<str>, T)> {
        let hash = self.hash(id);
        let slots = &self.slots;
        let (found, _) = self
            .index
            .find_entry(hash, |k| Self::is(slots, k, id))
            .ok()?
            .remove();
        let slot = found.slot;
        let (key, value) = self.slots.get_mut(slot as usize)?.take()?;
        self.free.push(slot);
        Some((slot, key, value))
    }

    /// Reads the entries in `slots` one after another without changing
    /// anything (`each` picks what to read of each), so that their misses
    /// in the processor's caches are waited for together; see
    /// [`crate::Picture::read_ahead`].
    pub fn read_ahead(&self, slots: &[Slot], each: impl Fn(&Arc<str>, &T) -> u64) -> u64 {
        slots
            .iter()
            .filter_map(|&slot| self.entry_at(slot))
            .fold(0, |seen, (id, v)| seen ^ each(id, v))
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
        let mut registry = Registry {
            slots,
            free,
            ..Registry::default()
        };
        let ids: Vec<(Arc<str>, Slot)> = registry
            .iter()
            .map(|(slot, id, _)| (id.clone(), slot))
            .collect();
        for (id, slot) in ids {
            registry.index_insert(&id, slot);
        }
        registry
    }

    /// Every entry, sorted by id.
    pub fn sorted(&self) -> Vec<(&Arc<str>, &T)> {
        let mut all: Vec<(&Arc<str>, &T)> = self.iter().map(|(_, k, v)| (k, v)).collect();
        all.sort_unstable_by(|a, b| a.0.cmp(b.0));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_ids_are_found_replaced_removed_and_restored() {
        let mut r: Registry<u32> = Registry::default();
        let ids = [
            String::new(),
            "s1".to_owned(),
            "x".repeat(INLINE),
            "x".repeat(INLINE + 1),
            format!("{}a", "x".repeat(INLINE)),
            "ünïcödé-gauge".to_owned(),
        ];
        for (n, id) in ids.iter().enumerate() {
            let slot = r.insert(id, u32::try_from(n).expect("a few ids"));
            assert_eq!(r.slot_of(id), Some(slot), "{id}");
        }
        assert_eq!(r.len(), ids.len());
        // Ids sharing a prefix with a longer or shorter one are not confused.
        assert_eq!(r.get(&"x".repeat(INLINE)), Some(&2));
        assert_eq!(r.get(&"x".repeat(INLINE + 1)), Some(&3));
        assert_eq!(r.get(&"x".repeat(INLINE - 1)), None);
        assert_eq!(r.get(&"x".repeat(INLINE + 2)), None);
        assert_eq!(r.get("s"), None);

        let long = "x".repeat(INLINE + 1);
        let slot = r.slot_of(&long).expect("inserted");
        assert_eq!(r.insert(&long, 30), slot, "a replacement keeps its slot");
        assert_eq!(r.get(&long), Some(&30));

        let (_, id, value) = r.remove("s1").expect("inserted");
        assert_eq!((&*id, value), ("s1", 1));
        assert_eq!(r.slot_of("s1"), None);
        assert!(r.remove("s1").is_none());
        let (removed, _, value) = r.remove(&long).expect("inserted");
        assert_eq!((removed, value), (slot, 30));
        assert_eq!(r.get(&long), None);
        assert_eq!(r.len(), ids.len() - 2);
        assert_eq!(
            r.insert("new", 40),
            removed,
            "the slot freed last is reused"
        );

        // Many more ids than the first table holds: rehashing keeps all.
        for n in 0..5_000u32 {
            let id = if n % 2 == 0 {
                format!("u{n}")
            } else {
                format!("{n}-{}", "y".repeat(30))
            };
            r.insert(&id, n);
        }
        let (slots, free) = r.parts();
        let restored = Registry::from_parts(slots.to_vec(), free.to_vec());
        for reg in [&r, &restored] {
            assert_eq!(reg.len(), ids.len() - 1 + 5_000);
            for n in (0..5_000u32).step_by(7) {
                let id = if n % 2 == 0 {
                    format!("u{n}")
                } else {
                    format!("{n}-{}", "y".repeat(30))
                };
                assert_eq!(reg.get(&id), Some(&n), "{id}");
            }
            assert_eq!(reg.get("new"), Some(&40));
            assert_eq!(reg.get(""), Some(&0));
            assert_eq!(reg.get("ünïcödé-gauge"), Some(&5));
        }
    }
}
