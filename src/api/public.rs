//! What anyone may read: health and readiness, who a token stands for, this API's own
//! description, the procedures and their service guides, bundles.

use super::*;

/// Liveness: the process answers.
pub(super) async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: the store is open and a rule set is live (a load balancer sends no traffic
/// to a node that answers 503 here).
pub(super) async fn ready(State(s): State<AppState>) -> axum::response::Response {
    let r = s.engine.readiness();
    let status = if r.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({ "ready": r.ready(), "checks": r }))).into_response()
}

pub(super) async fn me(State(s): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    let rules = s.engine.rules();
    let roles = s.engine.roles(&caller.0);
    Ok(Json(match &caller.0 {
        Actor::Staff(id) => json!({
            "kind": "staff", "id": id,
            "name": rules.staff.get(id).map(|x| x.name.clone()),
            "groups": rules.groups_of(id),
            "supervises": rules.supervised_by(id),
            "deputy_for": s.engine.principals_of(id),
            "roles": roles,
        }),
        Actor::Applicant(case) => json!({ "kind": "applicant", "case": case, "roles": roles }),
        _ => json!({ "kind": "admin", "id": "admin", "roles": roles }),
    }))
}

/// The OpenAPI document, generated from the route table.
pub(super) async fn openapi() -> Json<Value> {
    Json(schema::openapi(&table()))
}

pub(super) async fn procedures(State(s): State<AppState>) -> Json<Value> {
    let rules = s.engine.rules();
    // Internal procedures (staff requests) are not the public's business.
    let list: Vec<Value> = rules
        .procedures
        .values()
        .filter(|p| p.window)
        .map(|p| {
            json!({
                "id": p.id, "name": p.name, "department": p.department,
                "promised_days": p.promised_days, "statutory_days": p.statutory_days,
                "version": p.version,
            })
        })
        .collect();
    Json(json!({ "procedures": list }))
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct LangQuery {
    /// A language tag (`zh`, `en`): names the script gives in that language.
    #[serde(default)]
    lang: Option<String>,
}

/// The service guide (办事指南) of a procedure: what the public may know of it (see
/// `guichet_core::guide`), in the language asked for.
pub(super) async fn procedure(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<LangQuery>,
) -> ApiResult<Json<guichet_core::guide::ServiceGuide>> {
    let rules = s.engine.rules();
    let p = rules
        .procedures
        .get(&id)
        .filter(|p| p.window)
        .ok_or_else(|| ApiError::not_found(format!("procedure '{id}' does not exist")))?;
    let lang = q
        .lang
        .as_deref()
        .or(rules.office.language.as_deref())
        .unwrap_or("zh");
    Ok(Json(guichet_core::guide::ServiceGuide::of(p, &rules, lang)))
}

/// The whole definition of a procedure's live version, for staff: steps with their
/// groups, routes and conditions, hooks, notices, the file it comes from.
pub(super) async fn procedure_definition(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let rules = s.engine.rules();
    let p = rules
        .procedures
        .get(&id)
        .ok_or_else(|| ApiError::not_found(format!("procedure '{id}' does not exist")))?;
    let mut v = serde_json::to_value(&**p).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("version".into(), json!(p.version));
        m.insert("file".into(), json!(p.file));
        m.insert(
            "department_name".into(),
            json!(rules.departments.get(&p.department).map(|d| d.name.clone())),
        );
    }
    Ok(Json(v))
}

pub(super) async fn bundles(State(s): State<AppState>) -> Json<Value> {
    let rules = s.engine.rules();
    Json(json!({ "bundles": rules.bundles.values().collect::<Vec<_>>() }))
}
