//! Label values of the department and the agent role: configured names, and each label's
//! distinct values kept under its cap, so a misconfigured or hostile sender cannot grow the
//! series count.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::lock;
use crate::config::Settings;
use crate::record::snapshot::CappedState;

/// The label value of an empty department or a chat no agent took.
pub const NONE: &str = "none";
/// The label value of values past a cap.
pub const OTHER: &str = "other";
/// Longest label value kept; a longer id or role counts as `other`.
const MAX_LABEL_LEN: usize = 128;

/// A label value shared between series without copying (departments, roles).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Value(pub Arc<str>);

impl EncodeLabelValue for Value {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        encoder.write_str(&self.0)
    }
}

/// Maps raw ids and roles to label values, keeping each label's distinct values under its cap.
#[derive(Debug)]
struct Capped {
    label: &'static str,
    cap: usize,
    /// Raw value -> label value, for raw values that got a series of their own or share one.
    known: HashMap<Box<str>, Value>,
    /// Distinct label values handed out.
    values: HashSet<Value>,
    none: Value,
    other: Value,
}

impl Capped {
    fn new(label: &'static str, cap: usize) -> Self {
        Capped {
            label,
            cap,
            known: HashMap::new(),
            values: HashSet::new(),
            none: Value(Arc::from(NONE)),
            other: Value(Arc::from(OTHER)),
        }
    }

    /// The label value for `raw` (already mapped to its display form by `display`); `None` when
    /// it went to `other`.
    fn get(&mut self, raw: &str, display: impl FnOnce(&str) -> String) -> Option<Value> {
        if raw.is_empty() {
            return Some(self.none.clone());
        }
        if let Some(v) = self.known.get(raw) {
            return Some(v.clone());
        }
        if raw.len() > MAX_LABEL_LEN {
            return None;
        }
        let shown = escape_reserved(display(raw));
        let value = match self.values.get(shown.as_str()) {
            Some(v) => v.clone(),
            None if self.values.len() < self.cap => {
                let v = Value(Arc::from(shown));
                self.values.insert(v.clone());
                v
            }
            None => return None,
        };
        self.known.insert(raw.into(), value.clone());
        Some(value)
    }
}

impl Capped {
    fn export(&self) -> CappedState {
        let mut known: Vec<_> = self
            .known
            .iter()
            .map(|(raw, v)| (raw.to_string(), v.0.to_string()))
            .collect();
        known.sort();
        let mut values: Vec<_> = self.values.iter().map(|v| v.0.to_string()).collect();
        values.sort();
        CappedState { known, values }
    }

    fn import(&mut self, state: &CappedState, intern: &mut Interner) {
        self.values = state.values.iter().map(|v| intern.value(v)).collect();
        self.known = state
            .known
            .iter()
            .map(|(raw, v)| (raw.as_str().into(), intern.value(v)))
            .collect();
    }
}

/// Label values by their text, so that a state read back shares one value per label.
#[derive(Debug, Default)]
pub struct Interner(HashMap<String, Value>);

impl Interner {
    /// The value of `text`.
    pub fn value(&mut self, text: &str) -> Value {
        if let Some(v) = self.0.get(text) {
            return v.clone();
        }
        let v = Value(Arc::from(text));
        self.0.insert(text.to_owned(), v.clone());
        v
    }
}

/// A department or role whose own name is `none` or `other` gets one `_` in front, so it never
/// merges with the built-in series: `none` shows as `_none`, `other` as `_other`. A name that is
/// already underscores before one of the two gets one more (`_none` shows as `__none`), so no
/// two names share a value.
fn escape_reserved(shown: String) -> String {
    let word = shown.trim_start_matches('_');
    if word == NONE || word == OTHER {
        format!("_{shown}")
    } else {
        shown
    }
}

impl std::borrow::Borrow<str> for Value {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// The label values of departments and roles, with their caps.
#[derive(Debug)]
pub struct Labeler {
    names: HashMap<String, String>,
    departments: Mutex<Capped>,
    roles: Mutex<Capped>,
    overflow: Family<[(&'static str, &'static str); 1], Counter>,
}

impl Labeler {
    pub(crate) fn new(
        settings: &Settings,
        overflow: Family<[(&'static str, &'static str); 1], Counter>,
    ) -> Self {
        Labeler {
            names: settings
                .departments
                .iter()
                .map(|(k, v)| (k.clone(), v.trim().to_owned()))
                .collect(),
            departments: Mutex::new(Capped::new("department", settings.max_departments)),
            roles: Mutex::new(Capped::new("agent_role", settings.max_agent_roles)),
            overflow,
        }
    }

    /// `department`: the configured name for the id, else the id, else `none`; `other` past the cap.
    pub fn department(&self, id: &str) -> Value {
        let mut d = lock(&self.departments);
        let names = &self.names;
        d.get(id, |id| {
            names.get(id).cloned().unwrap_or_else(|| id.to_owned())
        })
        .unwrap_or_else(|| {
            self.overflow.get_or_create(&[("label", d.label)]).inc();
            d.other.clone()
        })
    }

    /// The departments' and the roles' values, for a snapshot.
    pub fn export(&self) -> (CappedState, CappedState) {
        (lock(&self.departments).export(), lock(&self.roles).export())
    }

    /// Take the departments' and the roles' values of a snapshot.
    pub fn import(&self, departments: &CappedState, roles: &CappedState, intern: &mut Interner) {
        lock(&self.departments).import(departments, intern);
        lock(&self.roles).import(roles, intern);
    }

    /// `agent_role`: the role (already lower-cased), `none` without one; `other` past the cap.
    pub fn role(&self, role: Option<&str>) -> Value {
        let mut r = lock(&self.roles);
        r.get(role.unwrap_or(""), str::to_owned).unwrap_or_else(|| {
            self.overflow.get_or_create(&[("label", r.label)]).inc();
            r.other.clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn department_labels_follow_names_ids_none_and_the_cap() {
        let mut settings = Settings::default();
        settings.departments.insert("12".into(), "Sales".into());
        settings.max_departments = 3;
        let overflow = Family::default();
        let l = Labeler::new(&settings, overflow.clone());
        let cases = [
            ("configured_name", "12", "Sales"),
            ("raw_id", "40", "40"),
            ("no_department", "", "none"),
            ("second_raw_id", "41", "41"),
            ("past_the_cap", "42", "other"),
            ("known_before_the_cap", "40", "40"),
            ("too_long", &"9".repeat(200), "other"),
        ];
        for (name, id, want) in cases {
            assert_eq!(&*l.department(id).0, want, "{name}");
        }
        assert_eq!(overflow.get_or_create(&[("label", "department")]).get(), 2);
    }

    #[test]
    fn names_that_are_the_built_in_values_are_escaped() {
        let mut settings = Settings::default();
        settings.departments.insert("7".into(), "other".into());
        let l = Labeler::new(&settings, Family::default());
        let cases = [
            ("id none", "none", "_none"),
            ("id other", "other", "_other"),
            ("configured name other", "7", "_other"),
            ("already escaped", "_none", "__none"),
            ("twice escaped", "__other", "___other"),
            ("other case kept", "None", "None"),
            ("a longer word", "nonesuch", "nonesuch"),
            ("underscores alone", "__", "__"),
            ("no department", "", "none"),
        ];
        for (name, id, want) in cases {
            assert_eq!(&*l.department(id).0, want, "{name}");
        }
        assert_eq!(&*l.role(Some("none")).0, "_none");
        assert_eq!(&*l.role(Some("other")).0, "_other");
        assert_eq!(&*l.role(None).0, "none");
    }

    #[test]
    fn roles_are_capped_too() {
        let settings = Settings {
            max_agent_roles: 1,
            ..Settings::default()
        };
        let l = Labeler::new(&settings, Family::default());
        assert_eq!(&*l.role(Some("administrator")).0, "administrator");
        assert_eq!(&*l.role(None).0, "none");
        assert_eq!(&*l.role(Some("operator")).0, "other");
    }
}
