//! Validation of form data and materials against a procedure's declared fields. Every
//! problem is found at once and says which field (or material) it is about, so that a
//! form can show it next to that field.

use serde_json::Value;

use crate::case::{Data, MaterialRef};
use crate::procedure::{FieldType, Procedure};

/// One problem of a form: the field it is about (`capacity_kva`, `material.site_plan`,
/// `applicant.name`; none for the form as a whole), what is wrong in English words, and
/// the same as a stable `code` with its `params` (`max`, `values`, ...), from which a page
/// or a client words it in the reader's language.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
    /// `invalid` when nothing more precise is known.
    pub code: &'static str,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub params: std::collections::BTreeMap<&'static str, String>,
}

impl Problem {
    /// A problem of the whole form rather than of one field.
    pub fn general(message: impl Into<String>) -> Problem {
        Problem {
            field: None,
            message: message.into(),
            code: "invalid",
            params: Default::default(),
        }
    }

    pub fn of(field: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            field: Some(field.into()),
            ..Problem::general(message)
        }
    }

    /// The problem's kind (see [`Problem::code`]).
    pub fn code(mut self, code: &'static str) -> Problem {
        self.code = code;
        self
    }

    /// A value the problem's wording needs besides the field's name.
    pub fn param(mut self, name: &'static str, value: impl Into<String>) -> Problem {
        self.params.insert(name, value.into());
        self
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

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
) -> Vec<Problem> {
    let mut errs = Vec::new();
    for (k, v) in update {
        let mut push = |problem: Problem| errs.push(problem);
        let of = |message: String| Problem::of(k.as_str(), message);
        let Some(f) = p.field(k) else {
            push(of(format!("unknown field '{k}'")).code("unknown_field"));
            continue;
        };
        if f.internal && who == Filler::Applicant {
            push(
                of(format!(
                    "field '{k}' is filled in by the office, not the applicant"
                ))
                .code("office_field"),
            );
            continue;
        }
        if v.is_null() {
            if f.required {
                push(of(format!("field '{k}' is required")).code("required"));
            }
            continue;
        }
        let label = &f.label;
        match f.kind {
            FieldType::String | FieldType::Text => match v.as_str() {
                None => push(of(format!("field '{k}' ({label}) must be text")).code("not_text")),
                Some(s) => {
                    let max = f.max_length.unwrap_or(if f.kind == FieldType::Text {
                        20_000
                    } else {
                        500
                    });
                    if s.chars().count() > max {
                        push(
                            of(format!(
                                "field '{k}' ({label}) is longer than {max} characters"
                            ))
                            .code("too_long")
                            .param("max", max.to_string()),
                        );
                    }
                    if let Some(re) = &f.regex {
                        if !re.is_match(s) {
                            push(
                                of(format!(
                                    "field '{k}' ({label}) does not have the expected form"
                                ))
                                .code("pattern"),
                            );
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
                    None if f.kind == FieldType::Integer => push(
                        of(format!("field '{k}' ({label}) must be a whole number"))
                            .code("not_integer"),
                    ),
                    None => push(
                        of(format!("field '{k}' ({label}) must be a number")).code("not_number"),
                    ),
                    Some(n) => {
                        if f.min.is_some_and(|m| n < m) || f.max.is_some_and(|m| n > m) {
                            let (min, max) = (
                                f.min.map_or("-∞".into(), |m| m.to_string()),
                                f.max.map_or("∞".into(), |m| m.to_string()),
                            );
                            push(
                                of(format!(
                                    "field '{k}' ({label}) must be between {min} and {max}"
                                ))
                                .code("out_of_range")
                                .param("min", min)
                                .param("max", max),
                            );
                        }
                    }
                }
            }
            FieldType::Boolean => {
                if !v.is_boolean() {
                    push(
                        of(format!("field '{k}' ({label}) must be true or false"))
                            .code("not_boolean"),
                    );
                }
            }
            FieldType::Date => {
                let valid = v
                    .as_str()
                    .map(|s| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d"));
                if !matches!(valid, Some(Ok(_))) {
                    push(
                        of(format!("field '{k}' ({label}) must be a date YYYY-MM-DD"))
                            .code("not_date"),
                    );
                }
            }
            FieldType::Enum => {
                if !v.as_str().is_some_and(|s| f.values.iter().any(|x| x == s)) {
                    let values = f.values.join(", ");
                    push(
                        of(format!("field '{k}' ({label}) must be one of: {values}"))
                            .code("not_choice")
                            .param("values", values),
                    );
                }
            }
        }
    }
    if complete {
        for f in p.fields.iter().filter(|f| f.required && !f.internal) {
            if merged.get(&f.id).is_none_or(Value::is_null) {
                errs.push(
                    Problem::of(
                        f.id.as_str(),
                        format!("field '{}' ({}) is required", f.id, f.label),
                    )
                    .code("required"),
                );
            }
        }
    }
    errs
}

/// Checks materials sent in answer to a supplement request: known ids and accepted
/// formats (what was already given stays, so nothing is missing).
pub fn check_materials_partial(p: &Procedure, given: &[MaterialRef]) -> Vec<Problem> {
    materials(p, given, false)
}

/// Checks uploaded materials: known ids, accepted formats, every required one present.
/// Missing required materials are listed all together, as a supplement request would.
pub fn check_materials(p: &Procedure, given: &[MaterialRef]) -> Vec<Problem> {
    materials(p, given, true)
}

fn materials(p: &Procedure, given: &[MaterialRef], complete: bool) -> Vec<Problem> {
    let mut errs = Vec::new();
    for m in given {
        let field = format!("material.{}", m.id);
        let Some(decl) = p.materials.iter().find(|d| d.id == m.id) else {
            errs.push(
                Problem::of(field, format!("unknown material '{}'", m.id)).code("unknown_material"),
            );
            continue;
        };
        let ext = m
            .file
            .rsplit_once('.')
            .map(|(_, e)| e.to_ascii_lowercase())
            .unwrap_or_default();
        if !decl.formats.is_empty() && !decl.formats.contains(&ext) {
            let formats = decl.formats.join(", ");
            errs.push(
                Problem::of(
                    field.as_str(),
                    format!(
                        "material '{}' ({}) must be one of: {formats}",
                        m.id, decl.name
                    ),
                )
                .code("format")
                .param("formats", formats),
            );
        }
        if m.file.is_empty() || m.file.len() > 255 || m.file.contains(['/', '\\']) {
            errs.push(
                Problem::of(field, format!("material '{}': invalid file name", m.id))
                    .code("file_name"),
            );
        }
    }
    if complete {
        for d in p
            .materials
            .iter()
            .filter(|d| d.required && !given.iter().any(|m| m.id == d.id))
        {
            errs.push(
                Problem::of(
                    format!("material.{}", d.id),
                    format!("missing material: {} ({})", d.name, d.id),
                )
                .code("missing_material"),
            );
        }
    }
    errs
}
