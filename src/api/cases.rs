//! Cases: submissions (with files), a case and its files, bundles, the applicant's
//! routes (tracking, supplying, withdrawing), stopping and extending the clock, cards.

use super::*;

// --- wire shapes ---------------------------------------------------------------------

/// A case on the wire: the stored case plus where it is, serialized in one pass.
#[derive(serde::Serialize)]
pub(super) struct CaseView<'a> {
    #[serde(flatten)]
    case: &'a Case,
    current_steps: Vec<String>,
}

/// The answer to an action on a case.
#[derive(serde::Serialize)]
pub(super) struct CaseBody<'a> {
    case: CaseView<'a>,
}

pub(super) fn case_body(c: &Case) -> Json<CaseBody<'_>> {
    Json(CaseBody {
        case: CaseView {
            case: c,
            current_steps: c.current_steps(),
        },
    })
}

pub(super) fn case_json(c: &Case) -> Value {
    serde_json::to_value(CaseView {
        case: c,
        current_steps: c.current_steps(),
    })
    .unwrap_or(Value::Null)
}

/// What an applicant sees: where the case is, not who holds it internally.
pub(super) fn applicant_view(c: &Case, history: &[HistoryEvent]) -> Value {
    json!({
        "number": c.number,
        "procedure": c.procedure,
        "procedure_name": c.procedure_name,
        "status": c.status,
        "current_steps": c.current_steps(),
        "submitted_at": c.submitted_at,
        "accepted_at": c.accepted_at,
        "decided_at": c.decided_at,
        "bundle": c.bundle,
        // What the office waits for from the applicant, if anything.
        "requested": c.supplement.as_ref().map(|r| r.items.clone())
            .or_else(|| c.commitment.as_ref().map(|m| m.items.clone())),
        "promised_by": c.commitment.as_ref().map(|m| m.due),
        "progress": history.iter().map(|e| json!({
            "at": e.at, "action": e.action, "step": e.step, "outcome": e.outcome,
        })).collect::<Vec<_>>(),
    })
}

pub(super) async fn submit(
    State(s): State<AppState>,
    caller: Caller,
    app: Application,
) -> ApiResult<impl IntoResponse> {
    let actor = caller.0;
    let (done, token) = commit(
        &s,
        move |e| {
            let done = e.submit_with_files(&actor, app.body, app.uploads)?;
            let token = e.applicant_token(done.case().id)?;
            Ok((done, token))
        },
        |(done, _)| done.ticket,
    )
    .await?;
    /// Serialized straight from the case, without an intermediate JSON tree.
    #[derive(serde::Serialize)]
    struct Submitted<'a> {
        case: CaseView<'a>,
        query_code: &'a str,
        applicant_token: String,
    }
    let c = done.case();
    Ok((
        StatusCode::CREATED,
        Json(Submitted {
            case: CaseView {
                case: c,
                current_steps: c.current_steps(),
            },
            query_code: &c.query_code,
            applicant_token: token,
        }),
    )
        .into_response())
}

/// A file of a case, for staff who may see the case: as an attachment, never rendered in
/// the browser.
pub(super) async fn case_file(
    State(s): State<AppState>,
    caller: Caller,
    Path((reference, sha256)): Path<(String, String)>,
) -> ApiResult<axum::response::Response> {
    let actor = caller.staff_or_admin()?.clone();
    let (material, bytes) = call(&s, move |e| e.material_file(&actor, &reference, &sha256)).await?;
    Ok(attachment(&material.file, bytes))
}

/// A file as an attachment, never rendered in the browser: its media type from its name,
/// `nosniff`, and a sandboxing CSP.
pub(crate) fn attachment(name: &str, bytes: Vec<u8>) -> axum::response::Response {
    use axum::http::{header, HeaderValue};
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-_".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b".-_".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let mut r = bytes.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(guichet_core::files::media_type(name)),
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    r
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct BundleSubmission {
    applicant: Applicant,
    /// The bundle's shared fields, entered once (see the bundle's `fields`).
    #[serde(default)]
    data: guichet_core::case::Data,
    items: Vec<BundleItem>,
}

impl super::extract::JsonPart for BundleSubmission {
    const PART: &'static str = "bundle";
    fn absent() -> Option<Self> {
        None
    }
}

/// A bundle: JSON, or multipart with the JSON in a `bundle` part and each file in a
/// part named `material.<procedure>:<material>`.
pub(super) async fn submit_bundle(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    sent: super::extract::WithFiles<BundleSubmission>,
) -> ApiResult<impl IntoResponse> {
    let actor = caller.0;
    let b = sent.body;
    let mut uploads = Vec::with_capacity(sent.uploads.len());
    for mut u in sent.uploads {
        let Some((procedure, material)) = u.material.split_once(':') else {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                format!(
                    "file part 'material.{}': name it material.<procedure>:<material>",
                    u.material
                ),
            ));
        };
        let procedure = procedure.to_string();
        u.material = material.to_string();
        uploads.push((procedure, u));
    }
    let (done, token) = commit(
        &s,
        move |e| {
            let done =
                e.submit_bundle_with_files(&actor, &id, b.applicant, b.data, b.items, uploads)?;
            // One token for the bundle: that of its first case reaches them all.
            let token = e.applicant_token(done.case().id)?;
            Ok((done, token))
        },
        |(done, _)| done.ticket,
    )
    .await?;
    let reference = done.case().bundle.clone();
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "bundle": reference,
            "query_code": done.case().query_code,
            "applicant_token": token,
            "cases": done.cases.iter().map(case_json).collect::<Vec<_>>(),
        })),
    ))
}

pub(super) async fn bundle_cases(
    State(s): State<AppState>,
    caller: Caller,
    Path(reference): Path<String>,
) -> ApiResult<Json<Value>> {
    let actor = caller.staff_or_admin()?.clone();
    let cases = call(&s, move |e| {
        let all = e.bundle_cases(&reference)?;
        Ok(all
            .into_iter()
            .filter(|c| e.can_see(&actor, c))
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(Json(
        json!({ "cases": cases.iter().map(case_json).collect::<Vec<_>>() }),
    ))
}

pub(super) async fn case(
    State(s): State<AppState>,
    caller: Caller,
    Path(reference): Path<String>,
) -> ApiResult<Json<Value>> {
    let actor = caller.0;
    let (case, closed, history, notices, level, offers) = call(&s, move |e| {
        let case = e.visible_case(&actor, &reference)?;
        let id = case.id;
        let notices = e.notices(&case)?;
        let proc = e.procedure_of(&case).ok();
        let level = proc.as_ref().map(|p| e.case_level(&e.rules(), p, &case));
        let offers = proc.as_ref().map(|p| e.offers(&actor, &case, p));
        let (closed, history) = (e.closed_tasks(id)?, e.history(id)?);
        Ok((case, closed, history, notices, level, offers))
    })
    .await?;
    let mut v = case_json(&case);
    if let Value::Object(m) = &mut v {
        m.insert("level".into(), json!(level));
        // What the caller may do on it now, as the case page offers it.
        m.insert("offers".into(), json!(offers));
        m.insert("closed_tasks".into(), json!(closed));
        m.insert("history".into(), json!(history));
        m.insert("notices".into(), json!(notices));
    }
    Ok(Json(v))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TrackQuery {
    #[serde(default)]
    code: Option<String>,
}

/// Whether a request reaches its case with a query code, whose wrong guesses count (an
/// applicant token reaches its own case without one).
pub(super) fn guesses_code(caller: &Caller) -> bool {
    !matches!(caller.0, Actor::Applicant(_))
}

/// What an applicant route's engine call answered; a `not_found` that may have come from a
/// wrong query code is counted against the client and the case (past the limit the answer
/// is 429 until the window passes) and audited.
pub(super) fn after_code<T>(
    s: &AppState,
    caller: &Caller,
    client: &guard::Client,
    reference: &str,
    answer: ApiResult<T>,
) -> ApiResult<T> {
    match answer {
        Err(e) if e.status == StatusCode::NOT_FOUND && guesses_code(caller) => {
            s.guesses.failed(&client.0, reference);
            audit_later(
                s,
                guichet_core::audit::Record::new(
                    s.engine.now(),
                    caller.0.name(),
                    "applicant.code_refused",
                    format!(
                        "case-number:{}",
                        reference.chars().take(64).collect::<String>()
                    ),
                )
                .with_detail(format!("client {}", client.0)),
            );
            tracing::warn!(message = "wrong query code", client = %client.0);
            Err(ApiError::not_found("no such case with that query code"))
        }
        other => other,
    }
}

pub(super) async fn track(
    State(s): State<AppState>,
    caller: Caller,
    client: guard::Client,
    Path(number): Path<String>,
    Query(q): Query<TrackQuery>,
) -> ApiResult<Json<Value>> {
    if guesses_code(&caller) {
        s.guesses.check(&client.0, &number)?;
    }
    let (actor, n) = (caller.0.clone(), number.clone());
    let answer = call(&s, move |e| {
        let case = e.applicant_access(&actor, &n, q.code.as_deref())?;
        let h = e.history(case.id)?;
        let n = e.notices(&case)?;
        Ok((case, h, n))
    })
    .await;
    let (case, history, notices) = after_code(&s, &caller, &client, &number, answer)?;
    let mut v = applicant_view(&case, &history);
    if let Value::Object(m) = &mut v {
        // What the office sent the applicant, and whether it arrived.
        let mine: Vec<Value> = notices
            .iter()
            .filter(|n| n.recipient == "applicant")
            .map(|n| {
                json!({
                    "id": n.id, "event": n.event, "channel": n.channel, "to": n.address,
                    "status": n.status, "at": n.created_at, "subject": n.subject, "body": n.body,
                })
            })
            .collect();
        m.insert("notices".into(), json!(mine));
    }
    Ok(Json(v))
}

/// A bundle followed as one: its reference and its query code (the same guess limits as
/// a case's), or the bundle's applicant token. Complete once every case is decided.
pub(super) async fn track_bundle(
    State(s): State<AppState>,
    caller: Caller,
    client: guard::Client,
    Path(reference): Path<String>,
    Query(q): Query<TrackQuery>,
) -> ApiResult<Json<Value>> {
    // Without a code (or the bundle's applicant token) nothing is guessed: nothing counts
    // against the address.
    let code = q.code.filter(|c| !c.trim().is_empty());
    let actor = caller.0.clone();
    if code.is_none() && !matches!(actor, Actor::Applicant(_)) {
        return Err(ApiError::not_found("no such bundle with that query code"));
    }
    s.guesses.check(&client.0, &reference)?;
    let r = reference.clone();
    let answer = call(&s, move |e| {
        let cases = e.track_bundle_as(&actor, &r, code.as_deref())?;
        cases
            .into_iter()
            .map(|c| {
                let h = e.history(c.id)?;
                Ok((c, h))
            })
            .collect::<guichet_core::Result<Vec<_>>>()
    })
    .await;
    let cases = after_code(&s, &caller, &client, &reference, answer)?;
    let complete = cases.iter().all(|(c, _)| !c.status.is_open());
    let views: Vec<Value> = cases.iter().map(|(c, h)| applicant_view(c, h)).collect();
    Ok(Json(json!({
        "bundle": reference,
        "complete": complete,
        "cases": views,
    })))
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct WithdrawBody {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RatingBody {
    /// The query code (the public; not needed with the applicant token or for staff).
    #[serde(default)]
    code: Option<String>,
    /// 1 (very dissatisfied) to 5 (very satisfied).
    score: u8,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    comment: Option<String>,
}

/// Rates a decided case (好差评): the applicant online, or staff recording what the
/// applicant said at the window. Once per case.
pub(super) async fn rate(
    State(s): State<AppState>,
    caller: Caller,
    client: guard::Client,
    Path(reference): Path<String>,
    Body(b): Body<RatingBody>,
) -> ApiResult<axum::response::Response> {
    let code = b.code.clone();
    applicant_action(
        &s,
        &caller,
        &client,
        reference,
        code,
        move |e, actor, case| {
            let rating = guichet_core::rating::RatingRequest {
                score: b.score,
                tags: b.tags,
                comment: b.comment,
            };
            e.rate(actor, case.id, rating)
        },
    )
    .await
}

/// An applicant's action on a case reached with its query code (or applicant token, or
/// by staff who may see it), under the guess limits; answers the case.
async fn applicant_action(
    s: &AppState,
    caller: &Caller,
    client: &guard::Client,
    reference: String,
    code: Option<String>,
    f: impl FnOnce(&Engine, &Actor, Case) -> guichet_core::Result<Committed> + Send + 'static,
) -> ApiResult<axum::response::Response> {
    if guesses_code(caller) {
        s.guesses.check(&client.0, &reference)?;
    }
    let (actor, r) = (caller.0.clone(), reference.clone());
    let answer = mutate(s, move |e| {
        let case = e.applicant_access(&actor, &r, code.as_deref())?;
        f(e, &actor, case)
    })
    .await;
    let done = after_code(s, caller, client, &reference, answer)?;
    Ok(case_body(done.case()).into_response())
}

/// Cases the caller may see matching the filters, newest first, a page at a time.
pub(super) async fn search_cases(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<guichet_core::search::CaseSearch>,
) -> ApiResult<Json<Value>> {
    let actor = caller.staff_or_admin()?.clone();
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_query", m);
    if q.limit
        .is_some_and(|l| !(1..=guichet_core::search::MAX_PAGE).contains(&l))
    {
        return Err(bad(format!(
            "limit must be between 1 and {}",
            guichet_core::search::MAX_PAGE
        )));
    }
    if let Some(a) = q
        .after
        .as_deref()
        .filter(|a| !a.is_empty() && a.parse::<u64>().is_err())
    {
        return Err(bad(format!("'{a}' is not a cursor from a previous page")));
    }
    let page = call(&s, move |e| e.search_cases(&actor, &q)).await?;
    Ok(Json(json!(page)))
}

pub(super) async fn withdraw(
    State(s): State<AppState>,
    caller: Caller,
    client: guard::Client,
    Path(reference): Path<String>,
    Body(b): Body<WithdrawBody>,
) -> ApiResult<axum::response::Response> {
    let code = b.code.clone();
    applicant_action(
        &s,
        &caller,
        &client,
        reference,
        code,
        move |e, actor, case| e.withdraw(actor, case.id, b.code.as_deref(), b.reason),
    )
    .await
}

pub(super) async fn applicant_cases(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let actor = caller.staff_or_admin()?.clone();
    let cases = call(&s, move |e| {
        let all = e.applicant_cases(&id)?;
        Ok(all
            .into_iter()
            .filter(|c| e.can_see(&actor, c))
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(Json(
        json!({ "cases": cases.iter().map(case_json).collect::<Vec<_>>() }),
    ))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CardQuery {
    /// `true`: answered cards only; `false`: open cards only.
    #[serde(default)]
    answered: Option<bool>,
    /// Cards to skip (default 0).
    #[serde(default)]
    offset: usize,
    /// Cards in the answer, 1 to 1000 (default 100).
    #[serde(default = "hundred_cards")]
    limit: usize,
}

fn hundred_cards() -> usize {
    100
}

/// Supervision and overdue cards addressed to the caller's groups.
pub(super) async fn cards(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<CardQuery>,
) -> ApiResult<Json<Value>> {
    let actor = caller.staff_or_admin()?.clone();
    super::check_limit(q.limit)?;
    let (offset, limit) = (q.offset, q.limit);
    let (list, total) = call(&s, move |e| {
        // The card index is pruned as cards are answered and cases close: the list
        // before paging is the office's open supervision, not its history.
        let all = e.cards(&actor, q.answered)?;
        let total = all.len();
        Ok((
            all.into_iter().skip(offset).take(limit).collect::<Vec<_>>(),
            total,
        ))
    })
    .await?;
    Ok(Json(
        json!({ "cards": list, "total": total, "offset": offset }),
    ))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct AnswerBody {
    reason: String,
}

pub(super) async fn answer_card(
    State(s): State<AppState>,
    caller: Caller,
    Path((reference, card)): Path<(String, String)>,
    Body(b): Body<AnswerBody>,
) -> ApiResult<axum::response::Response> {
    let actor = caller.staff_or_admin()?.clone();
    on_visible_case(&s, actor, reference, move |e, actor, id| {
        e.answer_card(actor, id, &card, &b.reason)
    })
    .await
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SupplyBody {
    /// The query code (not needed with the applicant token).
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    data: Data,
    #[serde(default)]
    materials: Vec<guichet_core::case::MaterialRef>,
}

impl super::extract::JsonPart for SupplyBody {
    const PART: &'static str = "supplement";
    fn absent() -> Option<Self> {
        Some(SupplyBody::default())
    }
}

/// The applicant answers a supplement request with the case number and query code, as
/// JSON or with the materials' files.
pub(super) async fn supply(
    State(s): State<AppState>,
    caller: Caller,
    client: guard::Client,
    Path(number): Path<String>,
    sent: super::extract::WithFiles<SupplyBody>,
) -> ApiResult<Json<Value>> {
    let (b, uploads) = (sent.body, sent.uploads);
    if guesses_code(&caller) {
        s.guesses.check(&client.0, &number)?;
    }
    let (actor, n) = (caller.0.clone(), number.clone());
    let answer = commit(
        &s,
        move |e| {
            let case = e.applicant_access(&actor, &n, b.code.as_deref())?;
            let done =
                e.supply_with_files(&case.number, &case.query_code, b.data, b.materials, uploads)?;
            let history = e.history(done.case().id)?;
            Ok((done, history))
        },
        |(done, _)| done.ticket,
    )
    .await;
    let (done, history) = after_code(&s, &caller, &client, &number, answer)?;
    Ok(Json(applicant_view(done.case(), &history)))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ReasonBody {
    #[serde(default)]
    reason: Option<String>,
}

/// Stops the clock with a reason (a suspension declared by staff).
pub(super) async fn suspend(
    State(s): State<AppState>,
    caller: Caller,
    Path(reference): Path<String>,
    Body(b): Body<ReasonBody>,
) -> ApiResult<axum::response::Response> {
    let actor = caller.staff_or_admin()?.clone();
    on_visible_case(&s, actor, reference, move |e, actor, id| {
        e.suspend(actor, id, b.reason.as_deref().unwrap_or_default())
    })
    .await
}

/// A staff action on a case the caller may see (else 404, as for no such case); answers
/// the case.
async fn on_visible_case(
    s: &AppState,
    actor: Actor,
    reference: String,
    f: impl FnOnce(&Engine, &Actor, u64) -> guichet_core::Result<Committed> + Send + 'static,
) -> ApiResult<axum::response::Response> {
    let done = mutate(s, move |e| {
        let id = e.visible_case_id(&actor, &reference)?;
        f(e, &actor, id)
    })
    .await?;
    Ok(case_body(done.case()).into_response())
}

/// Restarts the clock after a suspension; every deadline moves by the working days lost.
pub(super) async fn resume(
    State(s): State<AppState>,
    caller: Caller,
    Path(reference): Path<String>,
    Body(b): Body<ReasonBody>,
) -> ApiResult<axum::response::Response> {
    let actor = caller.staff_or_admin()?.clone();
    on_visible_case(&s, actor, reference, move |e, actor, id| {
        e.resume(actor, id, b.reason)
    })
    .await
}

/// Extends the statutory limit once (approver group only), with a reason.
pub(super) async fn extend(
    State(s): State<AppState>,
    caller: Caller,
    Path(reference): Path<String>,
    Body(b): Body<ReasonBody>,
) -> ApiResult<axum::response::Response> {
    let actor = caller.staff_or_admin()?.clone();
    on_visible_case(&s, actor, reference, move |e, actor, id| {
        e.extend(actor, id, b.reason.as_deref().unwrap_or_default())
    })
    .await
}

/// A supervisor issues a supervision card by hand, with the reason.
pub(super) async fn issue_card(
    State(s): State<AppState>,
    caller: Caller,
    Path(reference): Path<String>,
    Body(b): Body<AnswerBody>,
) -> ApiResult<axum::response::Response> {
    let mut answer = on_visible_case(&s, caller.0, reference, move |e, actor, id| {
        e.issue_card(actor, id, &b.reason)
    })
    .await?;
    *answer.status_mut() = StatusCode::CREATED;
    Ok(answer)
}
