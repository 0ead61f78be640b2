//! Radio status meanings (FMS/TETRA status 0–9). The table is
//! region-configurable; the default is the German FMS convention used by
//! Hamburg's fire brigade and rescue service.

use std::sync::Arc;

use serde::Deserialize;

use crate::view::StatusClass;

/// What one radio status means.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusMeaning {
    /// The class it puts the unit in; `None` keeps the previous class
    /// (requests such as "speech request" are not states).
    pub class: Option<StatusClass>,
    /// Short text for the display.
    pub text: Arc<str>,
    /// Whether a unit in this status is expected to report regularly, so
    /// that silence is flagged (en route, on scene, transporting).
    #[serde(default)]
    pub expects_reports: bool,
}

/// Meanings of statuses 0–9.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusTable {
    meanings: [StatusMeaning; 10],
}

impl StatusTable {
    /// A table from ten meanings, status 0 first.
    pub fn new(meanings: [StatusMeaning; 10]) -> StatusTable {
        StatusTable { meanings }
    }

    /// Replaces the meaning of `status` (0–9; anything larger is ignored).
    pub fn set(&mut self, status: u8, meaning: StatusMeaning) {
        if let Some(m) = self.meanings.get_mut(usize::from(status)) {
            *m = meaning;
        }
    }

    /// The meaning of `status` (0–9; anything larger reads as 9).
    pub fn get(&self, status: u8) -> &StatusMeaning {
        &self.meanings[usize::from(status.min(9))]
    }
}

impl Default for StatusTable {
    /// FMS status meanings (Germany).
    fn default() -> Self {
        let m = |class: Option<StatusClass>, text: &str, expects_reports: bool| StatusMeaning {
            class,
            text: text.into(),
            expects_reports,
        };
        use StatusClass::{Available, OnMission, Unavailable};
        StatusTable::new([
            m(None, "Notruf", false),
            m(Some(Available), "Frei über Funk", false),
            m(Some(Available), "Auf Wache", false),
            m(Some(OnMission), "Einsatz übernommen", true),
            m(Some(OnMission), "Am Einsatzort", true),
            m(None, "Sprechwunsch", false),
            m(Some(Unavailable), "Nicht einsatzbereit", false),
            m(Some(OnMission), "Patient aufgenommen", true),
            m(Some(OnMission), "Am Transportziel", false),
            m(None, "Fremdanmeldung", false),
        ])
    }
}
