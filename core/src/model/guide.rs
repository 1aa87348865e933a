//! The service guide (办事指南) of a procedure: what the public may know of it, from the
//! live version, in the reader's language where the script gives one. Nothing internal:
//! no hook or function names, files, templates, route conditions, groups or staff.
//!
//! The public JSON (`GET /api/procedures/{id}`) and the public pages both show this; the
//! whole definition is for staff.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::office::RuleSet;
use crate::procedure::{FieldType, Procedure, StepKind};

/// A name in the reader's language: the one given for `lang` (or its primary subtag, `zh`
/// for `zh-CN`), else the name the script declares.
pub fn localized<'a>(name: &'a str, names: &'a BTreeMap<String, String>, lang: &str) -> &'a str {
    let primary = lang.split(['-', '_']).next().unwrap_or(lang);
    names
        .get(lang)
        .or_else(|| names.get(primary))
        .map_or(name, String::as_str)
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ServiceGuide {
    pub id: String,
    pub name: String,
    pub department: String,
    pub department_name: String,
    /// The live version, which a new case starts on.
    pub version: String,
    pub description: Option<String>,
    pub who_may_apply: Option<String>,
    /// Working days promised, and the legal maximum; an immediate item (即办件, promised
    /// 0) is done the day it is accepted.
    pub promised_days: u32,
    /// An immediate item promised within this many working hours.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub promised_hours: Option<u32>,
    pub statutory_days: u32,
    pub immediate: bool,
    pub materials: Vec<GuideMaterial>,
    /// What the applicant fills in (fields staff fill in are not shown).
    pub fields: Vec<GuideField>,
    /// The steps, in order, as a simple picture of the flow.
    pub steps: Vec<GuideStep>,
    pub fees: Option<String>,
    pub legal_basis: Option<String>,
    pub window: Option<String>,
    pub hours: Option<String>,
    pub contact: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct GuideMaterial {
    pub id: String,
    pub name: String,
    pub required: bool,
    /// Accepted file extensions; empty accepts any.
    pub formats: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct GuideField {
    pub id: String,
    pub label: String,
    #[serde(rename = "type")]
    pub kind: FieldType,
    pub required: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_length: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct GuideStep {
    pub name: String,
    /// The step's own budget in working days, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days: Option<u32>,
    /// Or in working hours.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hours: Option<u32>,
    /// False for a special step (expert review, hearing) whose time does not count
    /// against the limits.
    pub counted: bool,
    /// Done by the system, not by a person.
    pub automatic: bool,
    /// For a parallel review: the names of the reviews that run at once.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub in_parallel: Vec<String>,
}

impl ServiceGuide {
    /// The guide of `p` for a reader of `lang`.
    pub fn of(p: &Procedure, rules: &RuleSet, lang: &str) -> ServiceGuide {
        let department = rules.departments.get(&p.department);
        let step_name = |id: &str| {
            p.step(id)
                .map(|s| localized(&s.name, &s.names, lang).to_string())
                .unwrap_or_default()
        };
        // Steps inside a parallel step's branches are shown with it.
        let inside = |id: &str| p.scopes.get(id).is_some_and(Option::is_some);
        ServiceGuide {
            id: p.id.clone(),
            name: localized(&p.name, &p.names, lang).to_string(),
            department: p.department.clone(),
            department_name: department
                .map(|d| localized(&d.name, &d.names, lang).to_string())
                .unwrap_or_else(|| p.department.clone()),
            version: p.version.clone(),
            description: p.guide.description.clone(),
            who_may_apply: p.guide.who_may_apply.clone(),
            promised_days: p.promised_days,
            promised_hours: p.promised_hours,
            statutory_days: p.statutory_days,
            immediate: p.promised_days == 0,
            materials: p
                .materials
                .iter()
                .map(|m| GuideMaterial {
                    id: m.id.clone(),
                    name: localized(&m.name, &m.names, lang).to_string(),
                    required: m.required,
                    formats: m.formats.clone(),
                })
                .collect(),
            fields: p
                .fields
                .iter()
                .filter(|f| !f.internal)
                .map(|f| GuideField {
                    id: f.id.clone(),
                    label: localized(&f.label, &f.labels, lang).to_string(),
                    kind: f.kind,
                    required: f.required,
                    values: f.values.clone(),
                    min: f.min,
                    max: f.max,
                    max_length: f.max_length,
                })
                .collect(),
            steps: p
                .steps
                .iter()
                .filter(|s| !inside(&s.id))
                .map(|s| GuideStep {
                    name: localized(&s.name, &s.names, lang).to_string(),
                    days: s.days,
                    hours: s.hours,
                    counted: s.counted,
                    automatic: s.kind == StepKind::Auto,
                    in_parallel: s.branches.iter().map(|b| step_name(b)).collect(),
                })
                .collect(),
            fees: p.guide.fees.clone(),
            legal_basis: p.guide.legal_basis.clone(),
            window: p.guide.window.clone(),
            hours: p.guide.hours.clone(),
            contact: p.guide.contact.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::localized;

    #[test]
    fn names_fall_back_from_the_full_tag_to_the_language_to_the_declared_name() {
        let names = [("zh".to_string(), "新装用电".to_string())].into();
        assert_eq!(localized("New connection", &names, "zh-CN"), "新装用电");
        assert_eq!(localized("New connection", &names, "zh"), "新装用电");
        assert_eq!(localized("New connection", &names, "en"), "New connection");
    }
}
