//! The mission log (Einsatztagebuch): what happened in a space, in the
//! words an operator would write, in time order. Alerts raised and
//! acknowledged, incidents opened, changed and closed, operators' actions,
//! drills begun and reset.
//!
//! [`Journal`] turns each flushed [`Delta`] into entries by comparing it
//! with what it has seen; operators' actions are entered directly, with
//! who did them. Pure like the rest of the crate: the caller stores the
//! entries.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Delta, EpochMs, Snapshot};

/// One line of the mission log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// When it was entered (the picture's clock), epoch ms.
    pub at_ms: EpochMs,
    /// `alert_raised`, `alert_acked`, `incident_opened`,
    /// `incident_changed`, `incident_closed`, `removed`, `drill_opened`,
    /// `drill_reset`.
    pub kind: String,
    /// The alert, incident or entity it is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub about: Option<String>,
    /// Who did it, for operators' actions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The line itself.
    pub text: String,
}

/// What the journal has seen of a space.
#[derive(Debug, Default)]
pub struct Journal {
    /// Alert id → acknowledged.
    alerts: BTreeMap<String, bool>,
    /// Incident id → (keyword, severity).
    incidents: BTreeMap<String, (String, u8)>,
}

fn entry(at_ms: EpochMs, kind: &str, about: &str, text: String) -> JournalEntry {
    JournalEntry {
        at_ms,
        kind: kind.to_owned(),
        about: Some(about.to_owned()),
        actor: None,
        text,
    }
}

impl Journal {
    /// Takes what a picture already shows as known, without entries (after
    /// recovery, whose history the stored mission log already holds).
    pub fn seed(&mut self, snapshot: &Snapshot) {
        for a in &snapshot.alerts {
            self.alerts.insert(a.id.clone(), a.acked);
        }
        for i in &snapshot.incidents {
            self.incidents
                .insert(i.id.clone(), (i.keyword.clone(), i.severity));
        }
    }

    /// The entries a flushed delta makes, at `at_ms`.
    pub fn observe(&mut self, delta: &Delta, at_ms: EpochMs) -> Vec<JournalEntry> {
        let mut out = Vec::new();
        for a in &delta.alerts {
            match self.alerts.insert(a.id.clone(), a.acked) {
                None => out.push(entry(
                    at_ms,
                    "alert_raised",
                    &a.id,
                    format!("Alert {} (level {}): {}", a.id, a.level, a.message),
                )),
                Some(false) if a.acked => out.push(entry(
                    at_ms,
                    "alert_acked",
                    &a.id,
                    format!("Alert {} acknowledged", a.id),
                )),
                Some(_) => {}
            }
        }
        for i in &delta.incidents {
            let now = (i.keyword.clone(), i.severity);
            let title = i
                .title
                .as_deref()
                .map(|t| format!(" ({t})"))
                .unwrap_or_default();
            match self.incidents.insert(i.id.clone(), now.clone()) {
                None => out.push(entry(
                    at_ms,
                    "incident_opened",
                    &i.id,
                    format!(
                        "Incident {} opened: {}{title}, severity {}",
                        i.id, i.keyword, i.severity
                    ),
                )),
                Some(before) if before != now => out.push(entry(
                    at_ms,
                    "incident_changed",
                    &i.id,
                    format!(
                        "Incident {}: {} severity {} (was {} severity {})",
                        i.id, now.0, now.1, before.0, before.1
                    ),
                )),
                Some(_) => {}
            }
        }
        for id in &delta.incidents_removed {
            if self.incidents.remove(id).is_some() {
                out.push(entry(
                    at_ms,
                    "incident_closed",
                    id,
                    format!("Incident {id} closed"),
                ));
            }
        }
        out
    }

    /// An operator acknowledged `alert`.
    pub fn acked(&mut self, alert: &str, actor: Option<&str>, at_ms: EpochMs) -> JournalEntry {
        self.alerts.insert(alert.to_owned(), true);
        JournalEntry {
            actor: actor.map(str::to_owned),
            ..entry(
                at_ms,
                "alert_acked",
                alert,
                format!("Alert {alert} acknowledged"),
            )
        }
    }

    /// Any other action of an operator (`removed`, `drill_reset`, …).
    pub fn action(
        kind: &str,
        about: Option<&str>,
        actor: Option<&str>,
        text: String,
        at_ms: EpochMs,
    ) -> JournalEntry {
        JournalEntry {
            at_ms,
            kind: kind.to_owned(),
            about: about.map(str::to_owned),
            actor: actor.map(str::to_owned),
            text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AlertView, IncidentView};

    fn alert(id: &str, acked: bool) -> AlertView {
        AlertView {
            id: id.into(),
            kind: "threshold".into(),
            entity: "pegel-st-pauli".into(),
            related: None,
            level: 2,
            message: "St. Pauli 4.8 m NHN".into(),
            ts_ms: 1,
            acked,
        }
    }

    fn incident(id: &str, severity: u8) -> IncidentView {
        IncidentView {
            id: id.into(),
            keyword: "FEU3".into(),
            severity,
            title: Some("Lagerhalle".into()),
            geometry: serde_json::json!({"type":"Point","coordinates":[10.0,53.5]}),
            ts_ms: 1,
            expires_ms: None,
        }
    }

    #[test]
    fn deltas_become_lines_once() {
        let mut j = Journal::default();
        let d = Delta {
            alerts: vec![alert("A1", false)],
            incidents: vec![incident("i1", 3)],
            ..Delta::default()
        };
        let e = j.observe(&d, 10);
        let kinds: Vec<&str> = e.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["alert_raised", "incident_opened"]);
        assert!(e[0].text.contains("St. Pauli 4.8 m NHN"), "{}", e[0].text);
        // The same views again (a changed unit in the area, say): nothing new.
        assert!(j.observe(&d, 11).is_empty());
        let d = Delta {
            alerts: vec![alert("A1", true)],
            incidents: vec![incident("i1", 4)],
            incidents_removed: vec!["never-seen".into()],
            ..Delta::default()
        };
        let kinds: Vec<String> = j.observe(&d, 12).into_iter().map(|e| e.kind).collect();
        assert_eq!(kinds, ["alert_acked", "incident_changed"]);
        let d = Delta {
            incidents_removed: vec!["i1".into()],
            ..Delta::default()
        };
        let e = j.observe(&d, 13);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].kind, "incident_closed");
        assert_eq!(e[0].at_ms, 13);
    }

    #[test]
    fn an_operators_ack_is_entered_once_with_who() {
        let mut j = Journal::default();
        j.observe(
            &Delta {
                alerts: vec![alert("A1", false)],
                ..Delta::default()
            },
            1,
        );
        let e = j.acked("A1", Some("leitstelle-1"), 2);
        assert_eq!(e.actor.as_deref(), Some("leitstelle-1"));
        // The delta that shows the ack adds nothing more.
        let later = j.observe(
            &Delta {
                alerts: vec![alert("A1", true)],
                ..Delta::default()
            },
            3,
        );
        assert!(later.is_empty());
    }

    #[test]
    fn seeding_enters_nothing() {
        let mut j = Journal::default();
        j.seed(&Snapshot {
            seq: 1,
            res: 10,
            cells: vec![],
            units: vec![],
            sensors: vec![],
            incidents: vec![incident("i1", 3)],
            alerts: vec![alert("A1", false)],
        });
        let d = Delta {
            alerts: vec![alert("A1", false)],
            incidents: vec![incident("i1", 3)],
            ..Delta::default()
        };
        assert!(j.observe(&d, 5).is_empty());
    }
}
