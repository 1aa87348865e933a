//! Validation of form data and materials against a procedure's declared fields.

use serde_json::Value;

use crate::case::{Data, MaterialRef};
use crate::procedure::{FieldType, Procedure};

/// Who is filling the form: applicants may not set internal fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filler {
    Applicant,
    Staff,
}

/// Checks `update` against the procedure's fields and returns every problem at once.
/// With `complete`, `merged` (the data after the update) must also hold every required
/// applicant field.
pub fn check_data(
    p: &Procedure,
    update: &Data,
    merged: &Data,
    who: Filler,
    complete: bool,
) -> Vec<String> {
    let mut errs = Vec::new();
    for (k, v) in update {
        let Some(f) = p.field(k) else {
            errs.push(format!("unknown field '{k}'"));
            continue;
        };
        if f.internal && who == Filler::Applicant {
            errs.push(format!(
                "field '{k}' is filled in by the office, not the applicant"
            ));
            continue;
        }
        if v.is_null() {
            if f.required {
                errs.push(format!("field '{k}' is required"));
            }
            continue;
        }
        let label = &f.label;
        match f.kind {
            FieldType::String | FieldType::Text => match v.as_str() {
                None => errs.push(format!("field '{k}' ({label}) must be text")),
                Some(s) => {
                    let max = f.max_length.unwrap_or(if f.kind == FieldType::Text {
                        20_000
                    } else {
                        500
                    });
                    if s.chars().count() > max {
                        errs.push(format!(
                            "field '{k}' ({label}) is longer than {max} characters"
                        ));
                    }
                    if let Some(re) = &f.regex {
                        if !re.is_match(s) {
                            errs.push(format!(
                                "field '{k}' ({label}) does not have the expected form"
                            ));
                        }
                    }
                }
            },
            FieldType::Integer | FieldType::Number => {
                let n = if f.kind == FieldType::Integer {
                    v.as_i64().map(|i| i as f64)
                } else {
                    v.as_f64()
                };
                match n {
                    None => errs.push(format!(
                        "field '{k}' ({label}) must be {}",
                        if f.kind == FieldType::Integer {
                            "a whole number"
                        } else {
                            "a number"
                        }
                    )),
                    Some(n) => {
                        if f.min.is_some_and(|m| n < m) || f.max.is_some_and(|m| n > m) {
                            errs.push(format!(
                                "field '{k}' ({label}) must be between {} and {}",
                                f.min.map_or("-∞".into(), |m| m.to_string()),
                                f.max.map_or("∞".into(), |m| m.to_string())
                            ));
                        }
                    }
                }
            }
            FieldType::Boolean => {
                if !v.is_boolean() {
                    errs.push(format!("field '{k}' ({label}) must be true or false"));
                }
            }
            FieldType::Date => {
                let valid = v
                    .as_str()
                    .map(|s| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d"));
                if !matches!(valid, Some(Ok(_))) {
                    errs.push(format!("field '{k}' ({label}) must be a date YYYY-MM-DD"));
                }
            }
            FieldType::Enum => {
                if !v.as_str().is_some_and(|s| f.values.iter().any(|x| x == s)) {
                    errs.push(format!(
                        "field '{k}' ({label}) must be one of: {}",
                        f.values.join(", ")
                    ));
                }
            }
        }
    }
    if complete {
        for f in p.fields.iter().filter(|f| f.required && !f.internal) {
            if merged.get(&f.id).is_none_or(Value::is_null) {
                errs.push(format!("field '{}' ({}) is required", f.id, f.label));
            }
        }
    }
    errs
}

/// Checks materials sent in answer to a supplement request: known ids and accepted
/// formats (what was already given stays, so nothing is missing).
pub fn check_materials_partial(p: &Procedure, given: &[MaterialRef]) -> Vec<String> {
    materials(p, given, false)
}

/// Checks uploaded materials: known ids, accepted formats, every required one present.
/// Missing required materials are listed all together, as a supplement request would.
pub fn check_materials(p: &Procedure, given: &[MaterialRef]) -> Vec<String> {
    materials(p, given, true)
}

fn materials(p: &Procedure, given: &[MaterialRef], complete: bool) -> Vec<String> {
    let mut errs = Vec::new();
    for m in given {
        let Some(decl) = p.materials.iter().find(|d| d.id == m.id) else {
            errs.push(format!("unknown material '{}'", m.id));
            continue;
        };
        let ext = m
            .file
            .rsplit_once('.')
            .map(|(_, e)| e.to_ascii_lowercase())
            .unwrap_or_default();
        if !decl.formats.is_empty() && !decl.formats.contains(&ext) {
            errs.push(format!(
                "material '{}' ({}) must be one of: {}",
                m.id,
                decl.name,
                decl.formats.join(", ")
            ));
        }
        if m.file.is_empty() || m.file.len() > 255 || m.file.contains(['/', '\\']) {
            errs.push(format!("material '{}': invalid file name", m.id));
        }
    }
    let missing: Vec<String> = p
        .materials
        .iter()
        .filter(|d| d.required && !given.iter().any(|m| m.id == d.id))
        .map(|d| format!("{} ({})", d.name, d.id))
        .collect();
    if complete && !missing.is_empty() {
        errs.push(format!("missing materials: {}", missing.join("; ")));
    }
    errs
}
