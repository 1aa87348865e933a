//! Form problems worded for the reader: the engine says what is wrong with a stable code
//! and its values (`too_long`, `max`); the pages say it in the reader's language, naming
//! the field or material as the form labels it. A code without a wording keeps the
//! engine's English sentence.

use guichet_core::form::Problem;
use guichet_core::guide::localized;
use guichet_core::office::RuleSet;
use guichet_core::procedure::Procedure;

use super::page;

/// What a form calls `field` of `p` (`capacity_kva`, `material.site_plan`).
fn name_in(p: &Procedure, field: &str, lang: &str) -> Option<String> {
    if let Some(id) = field.strip_prefix("material.") {
        let m = p.materials.iter().find(|m| m.id == id)?;
        return Some(localized(&m.name, &m.names, lang).to_string());
    }
    let f = p.field(field)?;
    Some(localized(&f.label, &f.labels, lang).to_string())
}

/// `problems` worded in `lang`. A field named `procedure:field` (a bundle's form) is
/// looked up in that procedure and its sentence begins with the service's name; other
/// fields belong to `procedure`.
pub(super) fn word(
    problems: Vec<Problem>,
    lang: &str,
    rules: &RuleSet,
    procedure: Option<&Procedure>,
) -> Vec<Problem> {
    problems
        .into_iter()
        .map(|mut pr| {
            let field = pr.field.clone().unwrap_or_default();
            let (service, p, local) = match field.split_once(':') {
                Some((id, rest)) => {
                    let p = rules.procedures.get(id).map(|p| p.as_ref());
                    let service = p.map(|p| localized(&p.name, &p.names, lang).to_string());
                    (service, p, rest.to_string())
                }
                None => (None, procedure, field),
            };
            let wording = page::label_or(lang, &format!("problem.{}", pr.code), "");
            if wording.is_empty() {
                return pr;
            }
            let name = p
                .and_then(|p| name_in(p, &local, lang))
                .unwrap_or_else(|| local.clone());
            let mut text = wording.replace("{label}", &name);
            for (k, v) in &pr.params {
                text = text.replace(&format!("{{{k}}}"), v);
            }
            pr.message = match service {
                Some(s) => format!("{s}: {text}"),
                None => text,
            };
            pr
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_code_of_the_engine_has_a_wording_in_every_language() {
        let codes = [
            "required",
            "unknown_field",
            "office_field",
            "not_text",
            "too_long",
            "pattern",
            "not_integer",
            "not_number",
            "out_of_range",
            "not_boolean",
            "not_date",
            "not_choice",
            "unknown_material",
            "format",
            "file_name",
            "missing_material",
            "empty_file",
            "too_large",
            "content",
            "applicant_id",
            "applicant_name",
            "nothing_sent",
        ];
        for lang in ["zh", "en"] {
            for code in codes {
                let key = format!("problem.{code}");
                assert_ne!(page::label(lang, &key), key, "{lang}: {key}");
            }
        }
    }
}
