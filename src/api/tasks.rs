//! Task actions and the worklist: claim, release, complete, return, transfer, reassign,
//! supplement requests, acceptance with a commitment.

use super::*;

/// The worklist's filters and page.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TaskQuery {
    procedure: Option<String>,
    department: Option<String>,
    group: Option<String>,
    /// `open` (unclaimed) or `claimed`.
    state: Option<guichet_core::case::TaskState>,
    /// Only tasks claimed by or assigned to the caller.
    #[serde(default)]
    mine: bool,
    bundle: Option<String>,
    /// Only tasks at this warning level.
    level: Option<guichet_core::limits::Level>,
    /// Tasks to skip (default 0).
    #[serde(default)]
    offset: usize,
    /// Tasks in the answer, 1 to 1000 (default 100).
    #[serde(default = "hundred")]
    limit: usize,
}

/// The caller's tasks, oldest first, a page at a time, with the total and the counts by
/// level of all the filter keeps.
pub(super) async fn worklist(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<TaskQuery>,
) -> ApiResult<Json<Value>> {
    super::check_limit(q.limit)?;
    let actor = caller.staff_or_admin()?.clone();
    let f = WorkFilter {
        procedure: q.procedure,
        department: q.department,
        group: q.group,
        state: q.state,
        mine: q.mine,
        bundle: q.bundle,
        level: q.level,
    };
    let (offset, limit) = (q.offset, q.limit);
    let page = call(&s, move |e| {
        e.worklist_page(
            &actor,
            &f,
            guichet_core::tasks::WorkOrder::Oldest,
            offset,
            limit,
        )
    })
    .await?;
    Ok(Json(json!({
        "tasks": page.items,
        "offset": page.offset,
        "total": page.total,
        "counts": page.counts,
    })))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct BoardQuery {
    /// Tasks to skip (default 0).
    #[serde(default)]
    offset: usize,
    /// Tasks in the answer, 1 to 1000 (default 100).
    #[serde(default = "hundred")]
    limit: usize,
}

fn hundred() -> usize {
    100
}

/// What a supervisor watches: the open tasks of the groups they supervise, worst first,
/// a page at a time with the total and the counts by level, and the open cards
/// addressed to their groups.
pub(super) async fn board(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<BoardQuery>,
) -> ApiResult<Json<Value>> {
    super::check_limit(q.limit)?;
    let actor = caller.staff_or_admin()?.clone();
    let board = call(&s, move |e| e.board(&actor, q.offset, q.limit)).await?;
    Ok(Json(json!(board)))
}

pub(super) async fn claim(
    State(s): State<AppState>,
    caller: Caller,
    Path(task): Path<String>,
) -> ApiResult<axum::response::Response> {
    let actor = caller.staff_or_admin()?.clone();
    let done = mutate(&s, move |e| e.claim(&actor, &task)).await?;
    Ok(case_body(done.case()).into_response())
}

pub(super) async fn release(
    State(s): State<AppState>,
    caller: Caller,
    Path(task): Path<String>,
) -> ApiResult<axum::response::Response> {
    let actor = caller.staff_or_admin()?.clone();
    let done = mutate(&s, move |e| e.release(&actor, &task)).await?;
    Ok(case_body(done.case()).into_response())
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CompleteBody {
    outcome: String,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    data: Data,
}

pub(super) async fn complete(
    State(s): State<AppState>,
    caller: Caller,
    Path(task): Path<String>,
    Body(b): Body<CompleteBody>,
) -> ApiResult<axum::response::Response> {
    let actor = caller.staff_or_admin()?.clone();
    let done = mutate(&s, move |e| {
        e.complete(&actor, &task, &b.outcome, b.comment, b.data)
    })
    .await?;
    Ok(case_body(done.case()).into_response())
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ReturnBody {
    to: String,
    #[serde(default)]
    comment: Option<String>,
}

pub(super) async fn return_to(
    State(s): State<AppState>,
    caller: Caller,
    Path(task): Path<String>,
    Body(b): Body<ReturnBody>,
) -> ApiResult<axum::response::Response> {
    let actor = caller.staff_or_admin()?.clone();
    let done = mutate(&s, move |e| e.return_to(&actor, &task, &b.to, b.comment)).await?;
    Ok(case_body(done.case()).into_response())
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TransferBody {
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    staff: Option<String>,
    #[serde(default)]
    comment: Option<String>,
}

pub(super) async fn transfer(
    State(s): State<AppState>,
    caller: Caller,
    Path(task): Path<String>,
    Body(b): Body<TransferBody>,
) -> ApiResult<axum::response::Response> {
    let actor = caller.staff_or_admin()?.clone();
    let done = mutate(&s, move |e| {
        e.transfer(&actor, &task, b.group, b.staff, b.comment)
    })
    .await?;
    Ok(case_body(done.case()).into_response())
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SignerBody {
    /// The member of the step's group who signs too.
    staff: String,
    #[serde(default)]
    comment: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TakeBackBody {
    /// Why (recorded in the history).
    #[serde(default)]
    comment: Option<String>,
}

/// 撤回: the handler who completed a task takes the step back while the next handler has
/// not acted.
pub(super) async fn take_back(
    State(s): State<AppState>,
    caller: Caller,
    Path(task): Path<String>,
    Body(b): Body<TakeBackBody>,
) -> ApiResult<axum::response::Response> {
    let actor = caller.staff_or_admin()?.clone();
    let done = mutate(&s, move |e| e.take_back(&actor, &task, b.comment)).await?;
    Ok(case_body(done.case()).into_response())
}

/// 加签: a signer of a countersign step adds another signer.
pub(super) async fn add_signer(
    State(s): State<AppState>,
    caller: Caller,
    Path(task): Path<String>,
    Body(b): Body<SignerBody>,
) -> ApiResult<axum::response::Response> {
    let actor = caller.staff_or_admin()?.clone();
    let done = mutate(&s, move |e| {
        e.add_signer(&actor, &task, &b.staff, b.comment)
    })
    .await?;
    Ok(case_body(done.case()).into_response())
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SupplementBody {
    /// Everything missing, in one notice.
    items: Vec<String>,
    #[serde(default)]
    comment: Option<String>,
}

/// Asks the applicant for supplementary materials (补正): at intake, before the clock
/// starts; later, with the clock stopped until the applicant answers.
pub(super) async fn request_supplement(
    State(s): State<AppState>,
    caller: Caller,
    Path(task): Path<String>,
    Body(b): Body<SupplementBody>,
) -> ApiResult<axum::response::Response> {
    let actor = caller.staff_or_admin()?.clone();
    let done = mutate(&s, move |e| {
        e.request_supplement(&actor, &task, b.items, b.comment)
    })
    .await?;
    Ok(case_body(done.case()).into_response())
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CommitmentBody {
    /// The minor items the applicant promises.
    items: Vec<String>,
    /// The promised date, YYYY-MM-DD.
    by: String,
    #[serde(default)]
    comment: Option<String>,
}

/// Accepts at intake with a commitment (容缺受理): the clock waits for the promised items;
/// the case is terminated if they are not there by the date.
pub(super) async fn accept_with_commitment(
    State(s): State<AppState>,
    caller: Caller,
    Path(task): Path<String>,
    Body(b): Body<CommitmentBody>,
) -> ApiResult<axum::response::Response> {
    let actor = caller.staff_or_admin()?.clone();
    let done = mutate(&s, move |e| {
        e.accept_with_commitment(&actor, &task, b.items, &b.by, b.comment)
    })
    .await?;
    Ok(case_body(done.case()).into_response())
}

/// A supervisor moves a task of a group they supervise to a member or another group.
pub(super) async fn reassign(
    State(s): State<AppState>,
    caller: Caller,
    Path(task): Path<String>,
    Body(b): Body<TransferBody>,
) -> ApiResult<axum::response::Response> {
    let actor = caller.0;
    let done = mutate(&s, move |e| {
        e.reassign(&actor, &task, b.group, b.staff, b.comment)
    })
    .await?;
    Ok(case_body(done.case()).into_response())
}
