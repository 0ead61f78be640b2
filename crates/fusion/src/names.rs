//! Interned names (unit types, sensor kinds): cell aggregates hold small
//! ids instead of strings, so recomputing a cell allocates nothing and a
//! cell costs a few dozen bytes. Ids are given in order of first sight,
//! which the events determine, so they are deterministic too.

use std::collections::HashMap;
use std::sync::Arc;

/// Id of an interned name.
pub type NameId = u16;

/// The names of a picture. Views carry a cheap shared copy of the list.
#[derive(Debug, Clone, Default)]
pub struct Names {
    list: Arc<Vec<Arc<str>>>,
    index: HashMap<Arc<str>, NameId, ahash::RandomState>,
}

impl Names {
    /// The id of `name`, adding it if new. Past `u16::MAX` names (a flood
    /// of made-up kinds), further ones share the last id.
    pub fn intern(&mut self, name: &str) -> NameId {
        if let Some(id) = self.index.get(name) {
            return *id;
        }
        let Ok(id) = NameId::try_from(self.list.len()) else {
            return NameId::MAX;
        };
        let name: Arc<str> = Arc::from(name);
        Arc::make_mut(&mut self.list).push(name.clone());
        self.index.insert(name, id);
        id
    }

    /// The name of `id`.
    pub fn name(&self, id: NameId) -> &str {
        name_of(&self.list, id)
    }

    /// The name of `id`, shared.
    pub fn shared_name(&self, id: NameId) -> Arc<str> {
        self.list
            .get(usize::from(id))
            .cloned()
            .unwrap_or_else(|| Arc::from("?"))
    }

    /// The shared list, for views.
    pub fn shared(&self) -> Arc<Vec<Arc<str>>> {
        self.list.clone()
    }
}

/// The name of `id` in `list` ("?" if out of range, which cannot happen
/// for ids from the same picture).
pub fn name_of(list: &[Arc<str>], id: NameId) -> &str {
    list.get(usize::from(id)).map_or("?", |s| s)
}

/// Most distinct texts [`Texts`] shares; beyond, each gets its own copy
/// (a flood of made-up values must not grow the table without bound).
const MAX_SHARED_TEXTS: usize = 65_536;

/// Shared copies of short texts that many entities repeat (units of
/// measure, organisations, position sources): one allocation each, so a
/// view's copy is a reference-count increment on memory that stays hot.
#[derive(Debug, Default)]
pub struct Texts {
    set: std::collections::HashSet<Arc<str>, ahash::RandomState>,
}

impl Texts {
    /// The shared copy of `text`.
    pub fn share(&mut self, text: &str) -> Arc<str> {
        if let Some(t) = self.set.get(text) {
            return t.clone();
        }
        let t: Arc<str> = Arc::from(text);
        if self.set.len() < MAX_SHARED_TEXTS {
            self.set.insert(t.clone());
        }
        t
    }
}
