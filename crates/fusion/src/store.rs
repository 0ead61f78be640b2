//! The cell index: every non-empty cell at every served resolution, kept
//! up to date incrementally.
//!
//! An entity's change reaches the index as "this member's contribution
//! moved from (cell a, old) to (cell b, new)". The index applies it to the
//! finest cell and to each ancestor directly (a few hash lookups, no
//! merging), and notes the cells whose maxima may have fallen
//! ([`CellAgg::sub`]). [`CellStore::settle`] recomputes just those, once
//! per flush, finest first: a finest cell from its members, a coarser one
//! from its children. Everything else is exact as it stands.
//!
//! Storage is compact, since a city-wide picture holds hundreds of
//! thousands of cells: aggregates live in dense slot vectors that grow by a
//! quarter at a time, and the hash tables hold four-byte slot numbers.

use h3o::{CellIndex, Resolution};
use hashbrown::HashTable;
use smallvec::SmallVec;

use crate::cell::{CellAgg, Contribution};
use crate::registry::Slot;

/// A cell member, by slot: eight bytes, no string compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Member {
    Unit(Slot),
    Sensor(Slot),
    Incident(Slot),
}

/// A finest cell: its aggregate and who is inside.
#[derive(Debug)]
struct Finest {
    agg: CellAgg,
    members: SmallVec<[Member; 2]>,
}

/// Slots of `T` by cell with a free list, indexed by a hash table of slot
/// numbers.
#[derive(Debug)]
struct Slots<T> {
    slots: Vec<Option<(CellIndex, T)>>,
    free: Vec<u32>,
    index: HashTable<u32>,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Slots {
            slots: Vec::new(),
            free: Vec::new(),
            index: HashTable::new(),
        }
    }
}

fn hash(state: &ahash::RandomState, cell: CellIndex) -> u64 {
    state.hash_one(u64::from(cell))
}

impl<T> Slots<T> {
    fn find(&self, state: &ahash::RandomState, cell: CellIndex) -> Option<u32> {
        let slots = &self.slots;
        self.index
            .find(hash(state, cell), |&i| {
                slots[i as usize].as_ref().is_some_and(|(c, _)| *c == cell)
            })
            .copied()
    }

    fn get(&self, state: &ahash::RandomState, cell: CellIndex) -> Option<&T> {
        let i = self.find(state, cell)?;
        self.slots[i as usize].as_ref().map(|(_, v)| v)
    }

    fn get_mut(&mut self, state: &ahash::RandomState, cell: CellIndex) -> Option<&mut T> {
        let i = self.find(state, cell)?;
        self.slots[i as usize].as_mut().map(|(_, v)| v)
    }

    fn get_or_insert_with(
        &mut self,
        state: &ahash::RandomState,
        cell: CellIndex,
        make: impl FnOnce() -> T,
    ) -> &mut T {
        let i = match self.find(state, cell) {
            Some(i) => i,
            None => {
                let i = match self.free.pop() {
                    Some(i) => {
                        self.slots[i as usize] = Some((cell, make()));
                        i
                    }
                    None => {
                        if self.slots.len() == self.slots.capacity() {
                            // Grow by a quarter, not by doubling: a large
                            // picture wastes at most a fifth of its slots.
                            self.slots.reserve_exact((self.slots.len() / 4).max(64));
                        }
                        self.slots.push(Some((cell, make())));
                        u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
                    }
                };
                let slots = &self.slots;
                self.index.insert_unique(hash(state, cell), i, |&j| {
                    slots[j as usize]
                        .as_ref()
                        .map_or(0, |(c, _)| hash(state, *c))
                });
                i
            }
        };
        match self.slots[i as usize].as_mut() {
            Some((_, v)) => v,
            None => unreachable!("slot {i} was just found or filled"),
        }
    }

    fn remove(&mut self, state: &ahash::RandomState, cell: CellIndex) {
        let slots = &self.slots;
        if let Ok(entry) = self.index.find_entry(hash(state, cell), |&i| {
            slots[i as usize].as_ref().is_some_and(|(c, _)| *c == cell)
        }) {
            let (i, _) = entry.remove();
            self.slots[i as usize] = None;
            self.free.push(i);
        }
    }

    fn iter(&self) -> impl Iterator<Item = (CellIndex, &T)> {
        self.slots.iter().flatten().map(|(c, v)| (*c, v))
    }

    fn len(&self) -> usize {
        self.index.len()
    }

    /// Bytes allocated for the slots, the free list and the table.
    fn bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Option<(CellIndex, T)>>()
            + self.free.capacity() * std::mem::size_of::<u32>()
            + self.index.allocation_size()
    }
}

/// Every non-empty cell at every served resolution.
#[derive(Debug)]
pub(crate) struct CellStore {
    /// Served resolutions, finest first.
    res: Vec<Resolution>,
    finest: Slots<Finest>,
    coarse: Slots<CellAgg>,
    hasher: ahash::RandomState,
    /// Cells changed since the last flush, at any resolution (may repeat).
    touched: Vec<CellIndex>,
    /// Per served resolution, cells whose maxima may be too high.
    recompute: Vec<Vec<CellIndex>>,
}

impl CellStore {
    pub fn new(res: Vec<Resolution>) -> CellStore {
        CellStore {
            recompute: vec![Vec::new(); res.len()],
            res,
            finest: Slots::default(),
            coarse: Slots::default(),
            hasher: ahash::RandomState::new(),
            touched: Vec::new(),
        }
    }

    /// The aggregate of `cell` (at any served resolution).
    pub fn get(&self, cell: CellIndex) -> Option<&CellAgg> {
        if cell.resolution() == self.res[0] {
            self.finest.get(&self.hasher, cell).map(|f| &f.agg)
        } else {
            self.coarse.get(&self.hasher, cell)
        }
    }

    /// Who is inside a finest cell.
    pub fn members(&self, cell: CellIndex) -> &[Member] {
        self.finest
            .get(&self.hasher, cell)
            .map_or(&[], |f| &f.members)
    }

    /// Every cell, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (CellIndex, &CellAgg)> {
        self.finest
            .iter()
            .map(|(c, f)| (c, &f.agg))
            .chain(self.coarse.iter())
    }

    /// True when nothing changed since the last [`CellStore::settle`].
    pub fn is_settled(&self) -> bool {
        self.touched.is_empty()
    }

    /// Number of cells.
    pub fn len(&self) -> usize {
        self.finest.len() + self.coarse.len()
    }

    /// Number of finest cells.
    pub fn finest_len(&self) -> usize {
        self.finest.len()
    }

    /// Bytes held by the index: slots, tables, spilled name lists and
    /// member lists.
    pub fn bytes(&self) -> usize {
        let spilled_members: usize = self
            .finest
            .iter()
            .filter(|(_, f)| f.members.spilled())
            .map(|(_, f)| f.members.capacity() * std::mem::size_of::<Member>())
            .sum();
        let spilled_aggs: usize = self.iter().map(|(_, a)| a.heap_bytes()).sum();
        self.finest.bytes() + self.coarse.bytes() + spilled_members + spilled_aggs
    }

    /// Moves `member`'s contribution from `old` to `new` (cell and what it
    /// adds; either may be none) at every served resolution.
    pub fn change(
        &mut self,
        member: Member,
        old: Option<(CellIndex, Contribution)>,
        new: Option<(CellIndex, Contribution)>,
    ) {
        if old == new {
            return;
        }
        for level in 0..self.res.len() {
            let res = self.res[level];
            let up = |x: Option<(CellIndex, Contribution)>| {
                x.and_then(|(c, k)| c.parent(res).map(|p| (p, k)))
            };
            let (a, b) = (up(old), up(new));
            let same_cell = matches!((a, b), (Some((x, _)), Some((y, _))) if x == y);
            if let Some((cell, c)) = a {
                let then = if same_cell { b.map(|(_, k)| k) } else { None };
                self.sub(level, cell, member, &c, then.as_ref(), !same_cell);
            }
            if let Some((cell, c)) = b {
                self.add(level, cell, member, &c, !same_cell);
            }
        }
    }

    fn add(&mut self, level: usize, cell: CellIndex, member: Member, c: &Contribution, join: bool) {
        self.touched.push(cell);
        if level == 0 {
            let f = self
                .finest
                .get_or_insert_with(&self.hasher, cell, || Finest {
                    agg: CellAgg::default(),
                    members: SmallVec::new(),
                });
            f.agg.add(c);
            if join {
                f.members.push(member);
            }
        } else {
            self.coarse
                .get_or_insert_with(&self.hasher, cell, CellAgg::default)
                .add(c);
        }
    }

    fn sub(
        &mut self,
        level: usize,
        cell: CellIndex,
        member: Member,
        c: &Contribution,
        then: Option<&Contribution>,
        leave: bool,
    ) {
        self.touched.push(cell);
        let (exact, empty) = if level == 0 {
            let Some(f) = self.finest.get_mut(&self.hasher, cell) else {
                return;
            };
            if leave {
                if let Some(i) = f.members.iter().position(|m| *m == member) {
                    f.members.swap_remove(i);
                }
            }
            (f.agg.sub(c, then), f.agg.is_empty() && then.is_none())
        } else {
            let Some(agg) = self.coarse.get_mut(&self.hasher, cell) else {
                return;
            };
            (agg.sub(c, then), agg.is_empty() && then.is_none())
        };
        if empty {
            if level == 0 {
                self.finest.remove(&self.hasher, cell);
            } else {
                self.coarse.remove(&self.hasher, cell);
            }
        } else if !exact {
            self.recompute[level].push(cell);
        }
    }

    /// Recomputes the cells whose maxima may have fallen, finest first
    /// (from their members' contributions), then each coarser resolution
    /// from its children. Returns the cells changed since the last call,
    /// sorted.
    pub fn settle(
        &mut self,
        contribution: impl Fn(Member) -> Option<Contribution>,
    ) -> Vec<CellIndex> {
        let mut scratch = CellAgg::default();
        for level in 0..self.res.len() {
            let mut cells = std::mem::take(&mut self.recompute[level]);
            cells.sort_unstable();
            cells.dedup();
            for cell in cells.drain(..) {
                if level == 0 {
                    let Some(f) = self.finest.get_mut(&self.hasher, cell) else {
                        continue;
                    };
                    f.agg.clear();
                    for m in &f.members {
                        if let Some(c) = contribution(*m) {
                            f.agg.add(&c);
                        }
                    }
                } else {
                    scratch.clear();
                    for child in cell.children(self.res[level - 1]) {
                        if let Some(a) = self.get(child) {
                            scratch.merge(a);
                        }
                    }
                    if let Some(agg) = self.coarse.get_mut(&self.hasher, cell) {
                        std::mem::swap(agg, &mut scratch);
                    }
                }
            }
            // Keep the (now empty) list's allocation for the next flush.
            self.recompute[level] = cells;
        }
        let mut touched = std::mem::take(&mut self.touched);
        touched.sort_unstable();
        touched.dedup();
        touched
    }
}
