//! Bundles (一件事): one application for several services, each a case of its own linked by
//! the bundle's reference, and tracked as one with the reference and any of the cases'
//! query codes.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use guichet_core::engine::BundleItem;
use guichet_core::form::Problem;
use guichet_core::guide::localized;
use guichet_core::Actor;
use serde::Serialize;

use super::apply::{self, InputView, MaterialView, Sent};
use super::page::{self, Page};
use super::public::{not_found, page_for, refused, PageQuery};
use crate::api::{AppState, Client};

#[derive(Serialize)]
struct Section {
    id: String,
    name: String,
    promised_days: u32,
    included: bool,
    fields: Vec<InputView>,
    materials: Vec<MaterialView>,
}

/// The bundle's shared fields as a procedure of their own (each as its first procedure
/// declares it), so the form draws and reads them as any procedure's; `None` without any.
fn shared_fields(
    bundle: &guichet_core::office::Bundle,
    rules: &guichet_core::office::RuleSet,
) -> Option<guichet_core::procedure::Procedure> {
    let procs: Vec<_> = bundle
        .procedures
        .iter()
        .filter_map(|id| rules.procedures.get(id))
        .collect();
    let mut shared = (***procs.first()?).clone();
    shared.materials.clear();
    shared.fields = bundle
        .fields
        .iter()
        .filter_map(|f| {
            procs
                .iter()
                .find_map(|p| p.fields.iter().find(|x| &x.id == f))
        })
        .cloned()
        .collect();
    (!shared.fields.is_empty()).then_some(shared)
}

/// The bundle's form: who applies once, the shared fields once, then a section per
/// service, each ticked.
fn form(
    p: Page,
    bundle: &guichet_core::office::Bundle,
    rules: &guichet_core::office::RuleSet,
    sent: &Sent,
    problems: &[Problem],
    first: bool,
    csrf: String,
) -> Page {
    let lang = p.lang;
    let sections: Vec<Section> = bundle
        .procedures
        .iter()
        .filter_map(|id| rules.procedures.get(id))
        .map(|proc| {
            let prefix = format!("{}:", proc.id);
            let (mut fields, materials) =
                apply::procedure_inputs(proc, sent, problems, lang, &prefix);
            // Entered once, above.
            fields.retain(|f| {
                !bundle
                    .fields
                    .iter()
                    .any(|s| f.name == format!("{prefix}field.{s}"))
            });
            Section {
                id: proc.id.clone(),
                name: localized(&proc.name, &proc.names, lang).to_string(),
                promised_days: proc.promised_days,
                included: first || sent.get(&format!("include.{}", proc.id)) == "yes",
                fields,
                materials,
            }
        })
        .collect();
    Page {
        template: "bundle.html",
        ..p
    }
    .with(
        "bundle",
        serde_json::json!({ "id": bundle.id, "name": bundle.name }),
    )
    .with("applicant", apply::applicant_inputs(sent, problems, lang))
    .with(
        "shared",
        shared_fields(bundle, rules)
            .map(|p| apply::procedure_inputs(&p, sent, problems, lang, "shared:").0)
            .unwrap_or_default(),
    )
    .with("sections", sections)
    .with("errors", apply::summary(problems))
    .with("csrf", csrf)
}

/// The application form of a bundle.
pub(super) async fn form_page(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    let mut p = page_for(&s, &q, &headers, "bundle.html");
    let rules = s.engine.rules();
    let Some(bundle) = rules.bundles.get(&id) else {
        return not_found(p);
    };
    let (csrf, new) = page::csrf_token(&headers);
    if new {
        p.set_csrf = Some(csrf.clone());
    }
    form(p, bundle, &rules, &Sent::default(), &[], true, csrf).into_response()
}

#[derive(Serialize)]
struct ReceiptCase {
    service: String,
    number: String,
    promised_days: u32,
}

/// Sends a bundle: one receipt for its cases, or the form again with every problem.
pub(super) async fn send(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
    req: axum::extract::Request,
) -> Response {
    let p = page_for(&s, &q, &headers, "bundle.html");
    let rules = s.engine.rules();
    let Some(bundle) = rules.bundles.get(&id).cloned() else {
        return not_found(p);
    };
    let sent = match apply::read(req, &s).await {
        Ok(sent) => sent,
        Err(status) => return refused(p, status),
    };
    if !page::csrf_ok(&headers, &sent.get("csrf")) {
        return refused(p, StatusCode::FORBIDDEN);
    }
    let lang = p.lang;
    let included: Vec<String> = bundle
        .procedures
        .iter()
        .filter(|id| sent.get(&format!("include.{id}")) == "yes")
        .cloned()
        .collect();
    let items: Vec<BundleItem> = included
        .iter()
        .filter_map(|id| rules.procedures.get(id))
        .map(|proc| {
            let prefix = format!("{}:", proc.id);
            BundleItem {
                procedure: proc.id.clone(),
                data: apply::data_of(proc, false, |name| sent.get(&format!("{prefix}{name}"))),
                materials: Vec::new(),
            }
        })
        .collect();
    let applicant = apply::applicant_of(&sent, lang);
    let shared = shared_fields(&bundle, &rules)
        .map(|p| apply::data_of(&p, false, |name| sent.get(&format!("shared:{name}"))))
        .unwrap_or_default();
    // The files go to the engine (`material.<procedure>:<id>`); the text stays to fill
    // the form again if need be.
    let Sent { text, uploads } = sent;
    let sent = Sent {
        text,
        uploads: Vec::new(),
    };
    let uploads: Vec<(String, guichet_core::files::Upload)> = uploads
        .into_iter()
        .filter_map(|mut u| {
            let (procedure, material) = u.material.split_once(':')?;
            let (procedure, material) = (procedure.to_string(), material.to_string());
            if !included.contains(&procedure) {
                return None;
            }
            u.material = material;
            Some((procedure, u))
        })
        .collect();
    let answer = if items.is_empty() {
        Err(crate::error::ApiError::from(guichet_core::Error::Invalid(
            vec![Problem::general(page::label(lang, "bundle.none"))],
        )))
    } else {
        let bundle_id = bundle.id.clone();
        s.pool
            .commit(
                move |e| {
                    let done = e.submit_bundle_with_files(
                        &Actor::Public,
                        &bundle_id,
                        applicant,
                        shared,
                        items,
                        uploads,
                    )?;
                    let received = e.rules().calendar.local_time_text(done.case().submitted_at);
                    Ok((done, received))
                },
                |(done, _)| done.ticket,
            )
            .await
            .map_err(crate::error::ApiError::from)
    };
    match answer {
        Ok((done, received)) => {
            let cases: Vec<ReceiptCase> = done
                .cases
                .iter()
                .map(|c| ReceiptCase {
                    service: rules
                        .procedures
                        .get(&c.procedure)
                        .map(|p| localized(&p.name, &p.names, lang).to_string())
                        .unwrap_or_else(|| c.procedure_name.clone()),
                    number: c.number.clone(),
                    promised_days: rules
                        .procedures
                        .get(&c.procedure)
                        .map_or(0, |p| p.promised_days),
                })
                .collect();
            Page {
                template: "bundle_receipt.html",
                ..p
            }
            .status(StatusCode::CREATED)
            .with("bundle", serde_json::json!({ "name": bundle.name }))
            .with("reference", done.case().bundle.clone())
            .with("code", done.case().query_code.clone())
            .with("received", received)
            .with("cases", cases)
            .into_response()
        }
        Err(e) => {
            let problems = if e.problems.is_empty() {
                vec![Problem::general(e.message.clone())]
            } else {
                super::problems::word(e.problems, lang, &rules, None)
            };
            let (csrf, _) = page::csrf_token(&headers);
            form(p, &bundle, &rules, &sent, &problems, false, csrf)
                .status(StatusCode::UNPROCESSABLE_ENTITY)
                .into_response()
        }
    }
}

#[derive(Serialize)]
struct TrackedCase {
    service: String,
    number: String,
    code: String,
    status: String,
    current: Vec<String>,
    promised_by: Option<String>,
}

/// The cases of a bundle for its applicant, as the tracking form's answer.
pub(super) async fn tracked(
    s: &AppState,
    client: &Client,
    p: Page,
    csrf: String,
    reference: &str,
    code: &str,
) -> Result<Response, crate::error::ApiError> {
    let lang = p.lang;
    s.guesses.check(&client.0, reference)?;
    let (r, c) = (reference.to_string(), code.to_string());
    let found = s
        .pool
        .call(move |e| {
            let cases = e.track_bundle(&r, &c)?;
            let rules = e.rules();
            let cal = &rules.calendar;
            Ok(cases
                .iter()
                .map(|c| {
                    let proc = rules.procedures.get(&c.procedure);
                    TrackedCase {
                        service: proc
                            .map(|p| localized(&p.name, &p.names, lang).to_string())
                            .unwrap_or_else(|| c.procedure_name.clone()),
                        number: c.number.clone(),
                        code: c.query_code.clone(),
                        status: serde_json::to_value(c.status)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default(),
                        current: c
                            .open_tasks()
                            .filter(|t| t.step != guichet_core::procedure::INTAKE_STEP)
                            .map(|t| {
                                proc.and_then(|p| p.step(&t.step))
                                    .map(|s| localized(&s.name, &s.names, lang).to_string())
                                    .unwrap_or_else(|| t.step_name.clone())
                            })
                            .collect(),
                        promised_by: c.promised_due.map(|d| cal.local_time_text(d)),
                    }
                })
                .collect::<Vec<_>>())
        })
        .await;
    match found {
        Ok(cases) => Ok(Page {
            template: "bundle_tracked.html",
            ..p
        }
        .with("reference", reference)
        .with("cases", cases)
        .with("csrf", csrf)
        .into_response()),
        Err(e) => {
            let e: crate::error::ApiError = e.into();
            if e.status == StatusCode::NOT_FOUND {
                s.guesses.failed(&client.0, reference);
            }
            Err(e)
        }
    }
}
