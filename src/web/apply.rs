//! Applying online: a form generated from the procedure's fields and materials, sent with
//! its files; every problem shown at once, next to its field; then a receipt with the
//! application's number and query code.

use std::collections::HashMap;

use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use guichet_core::case::Applicant;
use guichet_core::engine::Submission;
use guichet_core::files::Upload;
use guichet_core::form::Problem;
use guichet_core::guide::{localized, ServiceGuide};
use guichet_core::procedure::{FieldType, Procedure};
use guichet_core::Actor;
use serde::Serialize;
use serde_json::Value;

use super::page::{self, Page};
use super::public::{not_found, page_for, PageQuery};
use crate::api::AppState;

/// What the applicant sent: text by form name, and files.
#[derive(Default)]
pub(super) struct Sent {
    pub(super) text: HashMap<String, String>,
    pub(super) uploads: Vec<Upload>,
}

impl Sent {
    pub(super) fn get(&self, name: &str) -> String {
        self.text.get(name).cloned().unwrap_or_default()
    }
}

#[derive(Serialize)]
pub(super) struct InputView {
    pub(super) name: String,
    anchor: String,
    label: String,
    hint: Option<String>,
    kind: &'static str,
    required: bool,
    values: Vec<String>,
    value: String,
    error: Option<String>,
    autocomplete: &'static str,
}

#[derive(Serialize)]
pub(super) struct MaterialView {
    id: String,
    anchor: String,
    name: String,
    required: bool,
    accept: String,
    hint: String,
    error: Option<String>,
}

#[derive(Serialize)]
pub(super) struct SummaryError {
    anchor: String,
    message: String,
}

/// The anchor of a problem's field on the form (`procedure:field` in a bundle's form).
pub(super) fn anchor(field: &str) -> String {
    if let Some((procedure, rest)) = field.split_once(':') {
        return format!("{}-{}", procedure.replace('.', "_"), anchor(rest));
    }
    if let Some(id) = field.strip_prefix("material.") {
        format!("material-{id}")
    } else if let Some(what) = field.strip_prefix("applicant.") {
        format!("applicant-{what}")
    } else {
        format!("field-{field}")
    }
}

pub(super) fn kind(k: FieldType) -> &'static str {
    match k {
        FieldType::String => "string",
        FieldType::Text => "text",
        FieldType::Integer => "integer",
        FieldType::Number => "number",
        FieldType::Boolean => "boolean",
        FieldType::Date => "date",
        FieldType::Enum => "enum",
    }
}

/// A file input for material `m`: what it accepts, how large, what was wrong with it.
pub(super) fn material_view(
    m: &guichet_core::procedure::Material,
    lang: &str,
    error: Option<String>,
) -> MaterialView {
    material_input(m, lang, error, "")
}

/// A file input for material `m` of the form's section `prefix` (`procedure:` in a
/// bundle's form, empty otherwise).
pub(super) fn material_input(
    m: &guichet_core::procedure::Material,
    lang: &str,
    error: Option<String>,
    prefix: &str,
) -> MaterialView {
    let formats = if m.formats.is_empty() {
        page::label(lang, "guide.any_format")
    } else {
        m.formats.join(", ").to_uppercase()
    };
    MaterialView {
        anchor: anchor(&format!("{prefix}material.{}", m.id)),
        error,
        id: format!("{prefix}{}", m.id),
        name: localized(&m.name, &m.names, lang).to_string(),
        required: m.required,
        accept: m
            .formats
            .iter()
            .map(|f| format!(".{f}"))
            .collect::<Vec<_>>()
            .join(","),
        hint: page::label(lang, "apply.materials_hint")
            .replace("{formats}", &formats)
            .replace(
                "{mb}",
                &m.max_mb
                    .unwrap_or(guichet_core::files::DEFAULT_MAX_MB)
                    .to_string(),
            ),
    }
}

/// The inputs of `p`'s fields the applicant fills and of its materials, named under
/// `prefix` (`procedure:` in a bundle's form), filled with what was `sent`, with
/// `problems` next to them.
pub(super) fn procedure_inputs(
    p: &Procedure,
    sent: &Sent,
    problems: &[Problem],
    lang: &str,
    prefix: &str,
) -> (Vec<InputView>, Vec<MaterialView>) {
    let error_of = |field: &str| {
        let msgs: Vec<&str> = problems
            .iter()
            .filter(|pr| pr.field.as_deref() == Some(field))
            .map(|pr| pr.message.as_str())
            .collect();
        (!msgs.is_empty()).then(|| msgs.join("; "))
    };
    let fields = p
        .fields
        .iter()
        .filter(|f| !f.internal)
        .map(|f| InputView {
            name: format!("{prefix}field.{}", f.id),
            anchor: anchor(&format!("{prefix}{}", f.id)),
            label: localized(&f.label, &f.labels, lang).to_string(),
            hint: None,
            kind: kind(f.kind),
            required: f.required,
            values: f.values.clone(),
            value: sent.get(&format!("{prefix}field.{}", f.id)),
            error: error_of(&format!("{prefix}{}", f.id)),
            autocomplete: "off",
        })
        .collect();
    let materials = p
        .materials
        .iter()
        .map(|m| {
            let error = error_of(&format!("{prefix}material.{}", m.id));
            material_input(m, lang, error, prefix)
        })
        .collect();
    (fields, materials)
}

/// The form of `p`, filled with what was `sent`, with `problems` next to their fields.
pub(super) fn form(
    mut page: Page,
    p: &Procedure,
    sent: &Sent,
    problems: &[Problem],
    csrf: String,
) -> Page {
    let lang = page.lang;
    let applicant = applicant_inputs(sent, problems, lang);
    let (fields, materials) = procedure_inputs(p, sent, problems, lang, "");
    let errors = summary(problems);
    page.template = "apply.html";
    let title =
        page::label(lang, "apply.title").replace("{name}", localized(&p.name, &p.names, lang));
    page.with("title", title)
        .with("applicant", applicant)
        .with("fields", fields)
        .with("materials", materials)
        .with("errors", errors)
        .with("csrf", csrf)
}

/// The error summary at the top of a refused form: each problem, linked to its field.
pub(super) fn summary(problems: &[Problem]) -> Vec<SummaryError> {
    problems
        .iter()
        .map(|pr| SummaryError {
            anchor: pr.field.as_deref().map(anchor).unwrap_or_default(),
            message: pr.message.clone(),
        })
        .collect()
}

/// The applicant a form names.
pub(super) fn applicant_of(sent: &Sent, lang: &str) -> Applicant {
    let some = |name: &str| Some(sent.get(name).trim().to_string()).filter(|v| !v.is_empty());
    Applicant {
        id: sent.get("applicant.id").trim().to_string(),
        name: sent.get("applicant.name").trim().to_string(),
        phone: some("applicant.phone"),
        email: some("applicant.email"),
        language: Some(lang.to_string()),
    }
}

/// Who applies: name, ID or credit code, phone, e-mail.
pub(super) fn applicant_inputs(sent: &Sent, problems: &[Problem], lang: &str) -> Vec<InputView> {
    let error_of = |field: &str| {
        let msgs: Vec<&str> = problems
            .iter()
            .filter(|pr| pr.field.as_deref() == Some(field))
            .map(|pr| pr.message.as_str())
            .collect();
        (!msgs.is_empty()).then(|| msgs.join("; "))
    };
    [
        ("name", "apply.applicant_name", None, true, "name"),
        (
            "id",
            "apply.applicant_id",
            Some("apply.applicant_id_hint"),
            true,
            "off",
        ),
        (
            "phone",
            "apply.phone",
            Some("apply.phone_hint"),
            false,
            "tel",
        ),
        (
            "email",
            "apply.email",
            Some("apply.email_hint"),
            false,
            "email",
        ),
    ]
    .into_iter()
    .map(|(what, label, hint, required, autocomplete)| {
        let field = format!("applicant.{what}");
        InputView {
            anchor: anchor(&field),
            value: sent.get(&field),
            error: error_of(&field),
            name: field,
            label: page::label(lang, label),
            hint: hint.map(|h| page::label(lang, h)),
            kind: "string",
            required,
            values: Vec::new(),
            autocomplete,
        }
    })
    .collect()
}

/// The application form of a procedure.
pub(super) async fn form_page(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    let p = page_for(&s, &q, &headers, "apply.html");
    let rules = s.engine.rules();
    let Some(proc) = rules.procedures.get(&id).filter(|p| p.window) else {
        return not_found(p);
    };
    let (csrf, new) = page::csrf_token(&headers);
    let lang = p.lang;
    let mut p = p.with("g", ServiceGuide::of(proc, &rules, lang));
    if new {
        p.set_csrf = Some(csrf.clone());
    }
    form(p, proc, &Sent::default(), &[], csrf).into_response()
}

/// The data of a form as the procedure's field types want it: numbers as numbers, yes
/// and no as true and false; what does not parse stays text, for validation to name.
/// `internal` picks the staff's fields rather than the applicant's.
pub(super) fn data_of(
    p: &Procedure,
    internal: bool,
    get: impl Fn(&str) -> String,
) -> guichet_core::case::Data {
    let mut data = guichet_core::case::Data::new();
    for f in p.fields.iter().filter(|f| f.internal == internal) {
        let raw = get(&format!("field.{}", f.id));
        let raw = raw.trim();
        if raw.is_empty() {
            continue;
        }
        let value = match f.kind {
            FieldType::Integer => raw
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::from(raw)),
            FieldType::Number => raw
                .parse::<f64>()
                .ok()
                .and_then(|n| serde_json::Number::from_f64(n).map(Value::Number))
                .unwrap_or_else(|| Value::from(raw)),
            FieldType::Boolean => match raw {
                "yes" => Value::Bool(true),
                "no" => Value::Bool(false),
                other => Value::from(other),
            },
            _ => Value::from(raw),
        };
        data.insert(f.id.clone(), value);
    }
    data
}

#[derive(Serialize)]
struct ReceiptMaterial {
    name: String,
    file: String,
}

#[derive(Serialize)]
struct Receipt {
    number: String,
    code: String,
    service: String,
    received: String,
    immediate: bool,
    promised_days: u32,
    materials: Vec<ReceiptMaterial>,
}

/// Sends the application: the receipt, or the form again with every problem.
pub(super) async fn send(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
    req: Request,
) -> Response {
    let p = page_for(&s, &q, &headers, "apply.html");
    let rules = s.engine.rules();
    let Some(proc) = rules.procedures.get(&id).cloned() else {
        return not_found(p);
    };
    let sent = match read(req, &s).await {
        Ok(sent) => sent,
        Err(status) => return super::public::refused(p, status),
    };
    if !page::csrf_ok(&headers, &sent.get("csrf")) {
        return super::public::refused(p, StatusCode::FORBIDDEN);
    }
    receive(&s, &headers, p, proc, sent, Actor::Public).await
}

/// Hands an application to the engine as `actor` (the public online, a clerk at the
/// window): the receipt, or the form again with every problem.
pub(super) async fn receive(
    s: &AppState,
    headers: &HeaderMap,
    p: Page,
    proc: std::sync::Arc<Procedure>,
    sent: Sent,
    actor: Actor,
) -> Response {
    let rules = s.engine.rules();
    let id = proc.id.clone();
    let lang = p.lang;
    let submission = Submission {
        procedure: id,
        applicant: applicant_of(&sent, lang),
        data: data_of(&proc, false, |name| sent.get(name)),
        materials: Vec::new(),
    };
    // The files go to the engine; the text stays to fill the form again if need be.
    let Sent { text, uploads } = sent;
    let sent = Sent {
        text,
        uploads: Vec::new(),
    };
    let answer = s
        .pool
        .commit(
            move |e| {
                let done = e.submit_with_files(&actor, submission, uploads)?;
                let c = done.case().clone();
                let calendar = e.rules().calendar.clone();
                Ok((
                    done.ticket,
                    c,
                    calendar.local_time_text(done.case().submitted_at),
                ))
            },
            |(ticket, _, _)| *ticket,
        )
        .await;
    match answer {
        Ok((_, case, received)) => {
            let receipt = Receipt {
                number: case.number.clone(),
                code: case.query_code.clone(),
                service: localized(&proc.name, &proc.names, lang).to_string(),
                received,
                immediate: proc.promised_days == 0,
                promised_days: proc.promised_days,
                materials: case
                    .materials
                    .iter()
                    .map(|m| ReceiptMaterial {
                        name: proc
                            .materials
                            .iter()
                            .find(|d| d.id == m.id)
                            .map(|d| localized(&d.name, &d.names, lang).to_string())
                            .unwrap_or_else(|| m.id.clone()),
                        file: m.file.clone(),
                    })
                    .collect(),
            };
            Page {
                template: "receipt.html",
                ..p
            }
            .status(StatusCode::CREATED)
            .with("r", receipt)
            .into_response()
        }
        Err(e) => {
            let e: crate::error::ApiError = e.into();
            let problems = if e.problems.is_empty() {
                vec![Problem::general(e.message.clone())]
            } else {
                super::problems::word(e.problems, lang, &rules, Some(&proc))
            };
            let (csrf, _) = page::csrf_token(headers);
            let p = p.with("g", ServiceGuide::of(&proc, &rules, lang));
            form(p, &proc, &sent, &problems, csrf)
                .status(StatusCode::UNPROCESSABLE_ENTITY)
                .into_response()
        }
    }
}

/// Reads a `multipart/form-data` form: its text fields and its files.
pub(super) async fn read(req: Request, s: &AppState) -> Result<Sent, StatusCode> {
    let mut form = Multipart::from_request(req, s)
        .await
        .map_err(|_| StatusCode::BAD_REQUEST)?;
    let mut sent = Sent::default();
    while let Some(part) = form
        .next_field()
        .await
        .map_err(|_| StatusCode::BAD_REQUEST)?
    {
        let name = part.name().unwrap_or_default().to_string();
        if let Some(material) = name.strip_prefix("material.") {
            let file = part.file_name().unwrap_or_default().to_string();
            let material = material.to_string();
            let bytes = part.bytes().await.map_err(|_| StatusCode::BAD_REQUEST)?;
            // A file input left empty sends a part without a file.
            if !(file.is_empty() && bytes.is_empty()) {
                sent.uploads.push(Upload {
                    material,
                    name: file,
                    bytes: bytes.to_vec(),
                });
            }
        } else {
            let text = part.text().await.map_err(|_| StatusCode::BAD_REQUEST)?;
            sent.text.insert(name, text);
        }
    }
    Ok(sent)
}
