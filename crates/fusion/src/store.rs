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
//! thousands of cells: aggregates live in dense slot vectors that grow by an
//! eighth at a time, and the hash tables hold four-byte slot numbers.

use h3o::{CellIndex, Resolution};
use hashbrown::HashTable;
use smallvec::SmallVec;

use crate::cell::{CellAgg, Contribution, Replacement};
use crate::registry::Slot;

/// A cell member, by slot: eight bytes, no string compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Member {
    Unit(Slot),
    Sensor(Slot),
    Incident(Slot),
}

/// "No parent": the coarsest served resolution.
const NO_PARENT: u32 = u32::MAX;

/// "No slot remembered" for [`CellStore::change_hinted`].
pub(crate) const NO_SLOT: u32 = u32::MAX;

/// A cell at a coarser resolution: its aggregate, the slot of its parent
/// (so that a change climbs the resolutions without hashing) and whether
/// it changed since the last flush.
#[derive(Debug)]
struct Node {
    agg: CellAgg,
    parent: u32,
    touched: bool,
}

impl Node {
    fn new(parent: u32) -> Node {
        Node {
            agg: CellAgg::default(),
            parent,
            touched: false,
        }
    }
}

/// Who is inside a finest cell (two inline, more on the heap).
type Members = SmallVec<[Member; 2]>;

/// A finest cell: a node and who is inside.
#[derive(Debug)]
struct Finest {
    node: Node,
    members: Members,
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

    /// `find`, trying the slot `hint` first (a slot remembered by the
    /// caller: used only if it still holds `cell`).
    fn find_hinted(&self, state: &ahash::RandomState, cell: CellIndex, hint: u32) -> Option<u32> {
        match self.slots.get(hint as usize) {
            Some(Some((c, _))) if *c == cell => Some(hint),
            _ => self.find(state, cell),
        }
    }

    fn get(&self, state: &ahash::RandomState, cell: CellIndex) -> Option<&T> {
        let i = self.find(state, cell)?;
        self.slots[i as usize].as_ref().map(|(_, v)| v)
    }

    fn get_mut(&mut self, state: &ahash::RandomState, cell: CellIndex) -> Option<&mut T> {
        let i = self.find(state, cell)?;
        self.slots[i as usize].as_mut().map(|(_, v)| v)
    }

    /// The cell and value in slot `i`, to read.
    fn at_ref(&self, i: u32) -> Option<(CellIndex, &T)> {
        self.slots.get(i as usize)?.as_ref().map(|(c, v)| (*c, v))
    }

    /// The cell and value in slot `i`.
    fn at(&mut self, i: u32) -> Option<(CellIndex, &mut T)> {
        self.slots
            .get_mut(i as usize)?
            .as_mut()
            .map(|(c, v)| (*c, v))
    }

    /// Inserts `cell` (which must not be present); returns its slot.
    fn insert(&mut self, state: &ahash::RandomState, cell: CellIndex, value: T) -> u32 {
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some((cell, value));
                i
            }
            None => {
                if self.slots.len() == self.slots.capacity() {
                    // Grow by an eighth, not by doubling: a large picture
                    // leaves at most a ninth of its slots unused.
                    self.slots.reserve_exact((self.slots.len() / 8).max(64));
                }
                self.slots.push(Some((cell, value)));
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

    fn remove_at(&mut self, state: &ahash::RandomState, i: u32) {
        let Some((cell, _)) = self.slots.get(i as usize).and_then(Option::as_ref) else {
            return;
        };
        if let Ok(entry) = self.index.find_entry(hash(state, *cell), |&j| j == i) {
            entry.remove();
        }
        self.slots[i as usize] = None;
        self.free.push(i);
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

/// Where a changed cell is: finest or coarse, and its slot.
#[derive(Debug, Clone, Copy)]
struct Touched {
    finest: bool,
    slot: u32,
    cell: CellIndex,
}

/// Every non-empty cell at every served resolution.
#[derive(Debug)]
pub(crate) struct CellStore {
    /// Served resolutions, finest first.
    res: Vec<Resolution>,
    finest: Slots<Finest>,
    coarse: Slots<Node>,
    hasher: ahash::RandomState,
    /// Cells changed since the last flush, each once while it stays (a
    /// cell removed may appear again).
    touched: Vec<Touched>,
    /// Per served resolution, cells whose maxima may be too high.
    recompute: Vec<Vec<CellIndex>>,
    /// Counts every sensor entering or leaving a finest cell: lists of
    /// sensors derived from the member lists (neighbour rings) stay valid
    /// while it stands still.
    sensor_moves: u64,
}

/// One side (old or new) of a change, climbing the resolutions.
#[derive(Debug, Clone, Copy)]
struct Side {
    slot: u32,
    contribution: Contribution,
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
            sensor_moves: 0,
        }
    }

    /// How many times a sensor has entered or left a finest cell.
    pub fn sensor_moves(&self) -> u64 {
        self.sensor_moves
    }

    /// The aggregate of `cell` (at any served resolution).
    pub fn get(&self, cell: CellIndex) -> Option<&CellAgg> {
        if cell.resolution() == self.res[0] {
            self.finest.get(&self.hasher, cell).map(|f| &f.node.agg)
        } else {
            self.coarse.get(&self.hasher, cell).map(|n| &n.agg)
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
            .map(|(c, f)| (c, &f.node.agg))
            .chain(self.coarse.iter().map(|(c, n)| (c, &n.agg)))
    }

    /// True when nothing changed since the last [`CellStore::settle`].
    pub fn is_settled(&self) -> bool {
        self.touched.is_empty()
    }

    /// At most how many cells the next [`CellStore::settle`] emits.
    pub fn touched_len(&self) -> usize {
        self.touched.len()
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

    /// The slot of the finest `cell`, created with its ancestors if new.
    fn finest_slot(&mut self, cell: CellIndex) -> u32 {
        if let Some(i) = self.finest.find(&self.hasher, cell) {
            return i;
        }
        let parent = self.coarse_slot(cell, 1);
        let finest = Finest {
            node: Node::new(parent),
            members: SmallVec::new(),
        };
        self.finest.insert(&self.hasher, cell, finest)
    }

    /// The slot of `cell`'s ancestor at the served resolution `level`,
    /// created (with its own ancestors) if new.
    fn coarse_slot(&mut self, cell: CellIndex, level: usize) -> u32 {
        let Some(ancestor) = self.res.get(level).and_then(|r| cell.parent(*r)) else {
            return NO_PARENT;
        };
        if let Some(i) = self.coarse.find(&self.hasher, ancestor) {
            return i;
        }
        let parent = self.coarse_slot(cell, level + 1);
        self.coarse
            .insert(&self.hasher, ancestor, Node::new(parent))
    }

    /// Moves `member`'s contribution from `old` to `new` (cell and what it
    /// adds; either may be none) at every served resolution.
    pub fn change(
        &mut self,
        member: Member,
        old: Option<(CellIndex, Contribution)>,
        new: Option<(CellIndex, Contribution)>,
    ) {
        self.change_hinted(member, old, new, NO_SLOT);
    }

    /// [`CellStore::change`] for a member that remembers the slot of its
    /// finest cell (`hint`, checked before use, so a stale one only costs
    /// the hash lookup it would have saved). Returns the slot of the new
    /// finest cell to remember ([`NO_SLOT`] when there is none).
    pub fn change_hinted(
        &mut self,
        member: Member,
        old: Option<(CellIndex, Contribution)>,
        new: Option<(CellIndex, Contribution)>,
        hint: u32,
    ) -> u32 {
        if old == new {
            return hint;
        }
        if let (Some((x, before)), Some((y, after))) = (old, new)
            && x == y
            && let Some(slot) = self.finest.find_hinted(&self.hasher, x, hint)
        {
            self.replace_up(slot, &before, &after);
            return slot;
        }
        // Different finest cells (or the old one missing): out of one,
        // into the other, meeting where they share an ancestor.
        let mut a = old.and_then(|(cell, contribution)| {
            let slot = self.finest.find_hinted(&self.hasher, cell, hint)?;
            Some(Side { slot, contribution })
        });
        let mut b = new.map(|(cell, contribution)| Side {
            slot: self.finest_slot(cell),
            contribution,
        });
        // Created before anything is removed below, so it stays valid.
        let remembered = b.map_or(NO_SLOT, |side| side.slot);
        for level in 0..self.res.len() {
            let (up_a, up_b) = match (a, b) {
                (Some(x), Some(y)) if x.slot == y.slot => {
                    let up = self.replace(
                        level,
                        x.slot,
                        &Replacement::Other,
                        &x.contribution,
                        &y.contribution,
                    );
                    (up, up)
                }
                _ => (
                    a.and_then(|side| self.sub(level, side, member)),
                    b.and_then(|side| self.add(level, side, member)),
                ),
            };
            a = a.zip(up_a).map(|(s, slot)| Side { slot, ..s });
            b = b.zip(up_b).map(|(s, slot)| Side { slot, ..s });
            if a.is_none() && b.is_none() {
                break;
            }
        }
        remembered
    }

    /// Replaces a contribution in the same finest cell (`slot`) and
    /// therefore in every ancestor: one climb by parent slots, the change
    /// worked out once ([`Replacement`]) rather than at every level.
    fn replace_up(&mut self, slot: u32, old: &Contribution, new: &Contribution) {
        let op = Replacement::new(old, new);
        let mut at = Some(slot);
        for level in 0..self.res.len() {
            let Some(slot) = at else { break };
            at = self.replace(level, slot, &op, old, new);
        }
    }

    /// Replaces a contribution in the same cell at `level` (`op`: the
    /// change worked out beforehand, or [`Replacement::Other`]); returns
    /// the parent's slot.
    fn replace(
        &mut self,
        level: usize,
        slot: u32,
        op: &Replacement,
        old: &Contribution,
        new: &Contribution,
    ) -> Option<u32> {
        let (cell, node, _) = node_at(&mut self.finest, &mut self.coarse, level, slot)?;
        let exact = match op {
            Replacement::Sensor(change) => node.agg.replace_sensor(change, new),
            Replacement::Other => node.agg.replace(old, new),
        };
        if !exact {
            self.recompute[level].push(cell);
        }
        touch(&mut self.touched, level, slot, cell, node);
        parent_of(node)
    }

    /// Adds a contribution at `level`; returns the parent's slot.
    fn add(&mut self, level: usize, side: Side, member: Member) -> Option<u32> {
        let (cell, node, members) = node_at(&mut self.finest, &mut self.coarse, level, side.slot)?;
        node.agg.add(&side.contribution);
        if let Some(members) = members {
            members.push(member);
            if matches!(member, Member::Sensor(_)) {
                self.sensor_moves += 1;
            }
        }
        touch(&mut self.touched, level, side.slot, cell, node);
        parent_of(node)
    }

    /// Removes a contribution at `level` (and the cell, if that empties
    /// it); returns the parent's slot.
    fn sub(&mut self, level: usize, side: Side, member: Member) -> Option<u32> {
        let (cell, node, members) = node_at(&mut self.finest, &mut self.coarse, level, side.slot)?;
        if let Some(members) = members
            && let Some(i) = members.iter().position(|m| *m == member)
        {
            members.swap_remove(i);
            if matches!(member, Member::Sensor(_)) {
                self.sensor_moves += 1;
            }
        }
        let exact = node.agg.sub(&side.contribution, None);
        let parent = parent_of(node);
        if node.agg.is_empty() {
            // Listed even if touched before: it is gone now.
            self.touched.push(Touched {
                finest: level == 0,
                slot: side.slot,
                cell,
            });
            if level == 0 {
                self.finest.remove_at(&self.hasher, side.slot);
            } else {
                self.coarse.remove_at(&self.hasher, side.slot);
            }
        } else {
            touch(&mut self.touched, level, side.slot, cell, node);
            if !exact {
                self.recompute[level].push(cell);
            }
        }
        parent
    }

    /// Reads the finest cells in `slots` and their ancestors, each
    /// resolution for all of them before the next, changing nothing (see
    /// [`crate::Picture::read_ahead`]). Returns a value made of what was
    /// read.
    pub fn read_ahead(&self, slots: &mut [u32]) -> u64 {
        let mut seen = 0u64;
        for level in 0..self.res.len() {
            for at in slots.iter_mut() {
                *at = match self.node_ref(level == 0, *at) {
                    Some((cell, node)) => {
                        seen ^= u64::from(cell);
                        node.parent
                    }
                    None => NO_PARENT,
                };
            }
        }
        seen
    }

    /// The finest or coarse node in `slot`, with its cell, to read.
    fn node_ref(&self, finest: bool, slot: u32) -> Option<(CellIndex, &Node)> {
        if finest {
            self.finest.at_ref(slot).map(|(c, f)| (c, &f.node))
        } else {
            self.coarse.at_ref(slot)
        }
    }

    /// Reads the nodes of `touched` (for read-ahead).
    fn read_touched(&self, touched: &[Touched]) -> u64 {
        touched.iter().fold(0, |seen, t| {
            seen ^ self
                .node_ref(t.finest, t.slot)
                .map_or(0, |(_, n)| u64::from(n.parent) ^ n.agg.read())
        })
    }

    /// Recomputes the cells whose maxima may have fallen, finest first
    /// (from their members' contributions), then each coarser resolution
    /// from its children. Then hands every cell changed since the last
    /// call to `emit`, with its aggregate (`None`: the cell was removed),
    /// each once.
    pub fn settle(
        &mut self,
        contribution: impl Fn(Member) -> Option<Contribution>,
        mut emit: impl FnMut(CellIndex, Option<&CellAgg>),
    ) {
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
                    f.node.agg.clear();
                    for m in &f.members {
                        if let Some(c) = contribution(*m) {
                            f.node.agg.add(&c);
                        }
                    }
                } else {
                    scratch.clear();
                    for child in cell.children(self.res[level - 1]) {
                        if let Some(a) = self.get(child) {
                            scratch.merge(a);
                        }
                    }
                    if let Some(n) = self.coarse.get_mut(&self.hasher, cell) {
                        n.agg.assign(&scratch);
                    }
                }
            }
            // Keep the (now empty) list's allocation for the next flush.
            self.recompute[level] = cells;
        }
        let mut touched = std::mem::take(&mut self.touched);
        let mut gone = Vec::new();
        for group in touched.chunks(crate::engine::READ_AHEAD) {
            std::hint::black_box(self.read_touched(group));
            for t in group {
                let here = if t.finest {
                    self.finest.at(t.slot).map(|(c, f)| (c, &mut f.node))
                } else {
                    self.coarse.at(t.slot)
                };
                match here {
                    Some((cell, node)) if cell == t.cell => {
                        if node.touched {
                            node.touched = false;
                            emit(cell, Some(&node.agg));
                        }
                    }
                    _ => gone.push(t.cell),
                }
            }
        }
        touched.clear();
        self.touched = touched;
        // Removed cells, unless they came back (then listed above).
        gone.sort_unstable();
        gone.dedup();
        for cell in gone {
            if self.get(cell).is_none() {
                emit(cell, None);
            }
        }
    }
}

/// The node in `slot` at `level`, its cell, and (finest only) its members.
fn node_at<'a>(
    finest: &'a mut Slots<Finest>,
    coarse: &'a mut Slots<Node>,
    level: usize,
    slot: u32,
) -> Option<(CellIndex, &'a mut Node, Option<&'a mut Members>)> {
    if level == 0 {
        let (cell, f) = finest.at(slot)?;
        Some((cell, &mut f.node, Some(&mut f.members)))
    } else {
        let (cell, n) = coarse.at(slot)?;
        Some((cell, n, None))
    }
}

/// Lists a node's cell as changed, once until the next settle.
fn touch(touched: &mut Vec<Touched>, level: usize, slot: u32, cell: CellIndex, node: &mut Node) {
    if !node.touched {
        node.touched = true;
        touched.push(Touched {
            finest: level == 0,
            slot,
            cell,
        });
    }
}

fn parent_of(node: &Node) -> Option<u32> {
    (node.parent != NO_PARENT).then_some(node.parent)
}
