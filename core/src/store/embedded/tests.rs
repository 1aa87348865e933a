//! What a crash between the writes of one commit can leave behind, and that readers
//! and numbering ignore it.

use super::keys::*;
use super::*;
use crate::case::CaseStatus;
use crate::store::*;

fn event() -> HistoryEvent {
    HistoryEvent::new(chrono::Utc::now(), "t", "submitted")
}

fn submit(s: &SledStore, id: u64) -> Case {
    try_submit(s, id).unwrap()
}

/// Commits `before` → `after` with `timers`; returns the case as written.
fn change(s: &SledStore, before: Case, after: Case, timers: Vec<crate::case::Timer>) -> Case {
    let mut w = [CaseWrite {
        before: Some(before),
        after,
        event: event(),
        number_scope: None,
        timers,
        work: vec![],
        figures: None,
    }];
    s.commit(&mut w, &no_notices).unwrap();
    w[0].after.clone()
}

fn timer(case: u64, at: chrono::DateTime<chrono::Utc>, threshold: &str) -> crate::case::Timer {
    crate::case::Timer {
        at,
        case,
        limit: crate::case::Limit::Promised,
        token: None,
        threshold: threshold.into(),
        limit_due: at,
    }
}

#[test]
fn a_transitions_timers_share_a_key_that_moves_on_to_the_next_pending_one() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path(), 1 << 20).unwrap();
    let t0 = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    let at = |h: i64| t0 + chrono::Duration::hours(h);
    let before = submit(&s, 1);
    let mut after = before.clone();
    after.status = CaseStatus::InProgress;
    // Out of order on purpose: the group is kept oldest first.
    let timers = vec![
        timer(1, at(30), "breach"),
        timer(1, at(10), "yellow"),
        timer(1, at(20), "red"),
    ];
    change(&s, before, after, timers);
    let keys = || s.t().unwrap().state.scan_prefix([b'T']).count();
    assert_eq!(keys(), 1, "one key for the transition's three timers");
    assert_eq!(s.next_timer().unwrap(), Some(at(10)));
    assert!(s.due_timers(at(9), 10).unwrap().is_empty());

    let due = s.due_timers(at(25), 10).unwrap();
    assert_eq!(due.len(), 1);
    let thresholds: Vec<&str> = due[0].timers.iter().map(|t| t.threshold.as_str()).collect();
    assert_eq!(thresholds, ["yellow", "red", "breach"]);
    // Two fired; the breach stays, under its own time now.
    s.settle_timers(&due[0], &due[0].timers[2..]).unwrap();
    assert_eq!(keys(), 1);
    assert_eq!(s.next_timer().unwrap(), Some(at(30)));
    assert!(s.due_timers(at(29), 10).unwrap().is_empty());
    let due = s.due_timers(at(30), 10).unwrap();
    assert_eq!(due[0].timers.len(), 1);
    s.settle_timers(&due[0], &[]).unwrap();
    assert_eq!(keys(), 0);
    assert_eq!(s.next_timer().unwrap(), None);
}

#[test]
fn timers_a_format_2_store_wrote_one_per_key_still_fire_and_the_store_is_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    {
        let s = SledStore::open(dir.path(), 1 << 20).unwrap();
        let t = s.t().unwrap();
        let old = timer(7, t0, "breach");
        let mut k = vec![b'T'];
        k.extend_from_slice(&(t0.timestamp_millis() as u64).to_be_bytes());
        k.extend_from_slice(&7u64.to_be_bytes());
        k.extend_from_slice(old.card_id().as_bytes());
        t.state
            .insert(k, serde_json::to_vec(&old).unwrap())
            .unwrap();
        t.meta
            .insert("format_version", &2u64.to_be_bytes())
            .unwrap();
        t.db.flush().unwrap();
    }
    let s = SledStore::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(
        s.meta("format_version").unwrap().as_deref(),
        Some(&FORMAT_VERSION.to_be_bytes()[..])
    );
    assert_eq!(s.next_timer().unwrap(), Some(t0));
    let due = s.due_timers(t0, 10).unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].timers, vec![timer(7, t0, "breach")]);
    s.settle_timers(&due[0], &[]).unwrap();
    assert_eq!(s.next_timer().unwrap(), None);
}

#[test]
fn timer_groups_are_binary_keep_every_field_and_read_json_groups_of_format_3() {
    let at = chrono::DateTime::from_timestamp(1_800_000_000, 123_456_789).unwrap();
    let group = vec![
        crate::case::Timer {
            token: Some(u32::MAX),
            limit: crate::case::Limit::Step,
            ..timer(u64::MAX, at, "75%")
        },
        crate::case::Timer {
            limit_due: at + chrono::Duration::days(3),
            limit: crate::case::Limit::Commitment,
            ..timer(2, at, "十日")
        },
        timer(3, at, ""),
    ];
    let bytes = super::timers::encode(&group);
    assert_eq!(super::timers::decode(&bytes).unwrap(), group);
    assert!(bytes.len() < serde_json::to_vec(&group).unwrap().len() / 2);
    assert_eq!(
        super::timers::decode(&super::timers::encode(&[])).unwrap(),
        vec![]
    );
    // Cut anywhere, a group is an error, never a panic or a shorter group.
    for n in 1..bytes.len() {
        assert!(super::timers::decode(&bytes[..n]).is_err(), "cut at {n}");
    }
    let mut wrong_limit = bytes.clone();
    wrong_limit[5 + 24 + 8] = 9;
    assert!(super::timers::decode(&wrong_limit).is_err());
    // Format 3 wrote a JSON array.
    assert_eq!(
        super::timers::decode(&serde_json::to_vec(&group).unwrap()).unwrap(),
        group
    );
}

#[test]
fn an_unreadable_timer_group_is_moved_to_the_incidents_and_the_rest_still_fire() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path(), 1 << 20).unwrap();
    let t0 = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    let before = submit(&s, 1);
    let after = before.clone();
    change(&s, before, after, vec![timer(1, t0, "breach")]);
    // Earlier in the index than the good group, and not a timer group at all.
    let mut bad = super::timers::encode(&[timer(2, t0, "75%")]);
    bad.truncate(bad.len() - 1);
    let tail = pair_key(b'T', 2, 0);
    s.t()
        .unwrap()
        .state
        .insert(timer_key(t0 - chrono::Duration::hours(1), &tail[1..]), bad)
        .unwrap();
    let due = s.due_timers(t0, 10).unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].timers, vec![timer(1, t0, "breach")]);
    assert_eq!(s.t().unwrap().state.scan_prefix([b'T']).count(), 1);
    let incidents = s.incidents(10).unwrap();
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0].code, "bad_timer");
    assert_eq!(incidents[0].case, Some(2));
}

#[test]
fn the_card_index_has_one_key_per_case_and_group_and_reads_format_3_keys() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path(), 1 << 20).unwrap();
    let card = |id: &str, holders: &[&str], supervisor: &str| crate::case::Card {
        id: id.into(),
        kind: crate::case::CardKind::Supervision,
        limit: crate::case::Limit::Promised,
        step: None,
        threshold: id.into(),
        due: chrono::Utc::now(),
        issued_at: chrono::Utc::now(),
        holders: holders.iter().map(|h| h.to_string()).collect(),
        assignees: vec![],
        supervisor: Some(supervisor.into()),
        answer: None,
    };
    let keys = || s.t().unwrap().state.scan_prefix([b'K']).count();
    let mut before = submit(&s, 1);
    for (n, c) in [
        card("75%", &["review"], "chief"),
        // The breach to the same groups writes no key; an escalation group one.
        card("breach", &["review"], "chief"),
        card("breach-2", &["review"], "board"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut after = before.clone();
        after.cards.push(c);
        before = change(&s, before, after, vec![]);
        assert_eq!(keys(), [2, 2, 3][n]);
    }
    // Format 3: a key per card, the card id after the case id.
    let mut old = key(b'K', &[b"review", &9u64.to_be_bytes(), b"75%"]);
    s.t().unwrap().state.insert(old.clone(), vec![]).unwrap();
    old.truncate(old.len() - 2);
    old.extend_from_slice(b"breach");
    s.t().unwrap().state.insert(old, vec![]).unwrap();
    assert_eq!(s.cases_with_cards_for("review").unwrap(), [1, 9]);
    assert_eq!(s.cases_with_cards_for("board").unwrap(), [1]);
    assert!(s.cases_with_cards_for("nobody").unwrap().is_empty());
}

#[test]
fn closed_cases_whose_cards_are_answered_leave_the_card_index() {
    let dir = tempfile::tempdir().unwrap();
    let card = |answered: bool| crate::case::Card {
        id: "75%".into(),
        kind: crate::case::CardKind::Supervision,
        limit: crate::case::Limit::Promised,
        step: None,
        threshold: "75%".into(),
        due: chrono::Utc::now(),
        issued_at: chrono::Utc::now(),
        holders: vec!["review".into()],
        assignees: vec![],
        supervisor: None,
        answer: answered.then(|| crate::case::CardAnswer {
            by: "a".into(),
            at: chrono::Utc::now(),
            reason: "done".into(),
        }),
    };
    {
        let s = SledStore::open(dir.path(), 1 << 20).unwrap();
        let mut cases = Vec::new();
        for id in 1..=3 {
            let before = submit(&s, id);
            let mut after = before.clone();
            after.cards.push(card(id != 2));
            cases.push(change(&s, before, after, vec![]));
        }
        assert_eq!(s.cases_with_cards_for("review").unwrap(), [1, 2, 3]);
        // Case 1 closes with its card answered: it leaves. Case 2 closes with its card
        // unanswered: it stays until answered.
        for c in cases.drain(..2) {
            let mut after = c.clone();
            after.status = CaseStatus::Approved;
            change(&s, c, after, vec![]);
        }
        assert_eq!(s.cases_with_cards_for("review").unwrap(), [2, 3]);
        // A store of format 4 kept the entry of a closed case: opened, it is pruned.
        s.t()
            .unwrap()
            .state
            .insert(key(b'K', &[b"review", &1u64.to_be_bytes()]), vec![])
            .unwrap();
        s.t()
            .unwrap()
            .meta
            .insert("format_version", &4u64.to_be_bytes())
            .unwrap();
        s.flush().unwrap();
    }
    let s = SledStore::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(s.cases_with_cards_for("review").unwrap(), [2, 3]);
}

#[test]
fn open_cases_per_version_are_counted_once_then_kept_current() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path(), 1 << 20).unwrap();
    let v = ("p".to_string(), "v".to_string());
    let open = |s: &SledStore| s.open_cases_by_version().unwrap().get(&v).copied();
    let a = submit(&s, 1);
    submit(&s, 2);
    // A submission that failed before its record left its index entry behind.
    s.set_fault(Some(fail_at(FaultPoint::BeforeRecord)));
    assert!(try_submit(&s, 3).is_err());
    s.set_fault(None);
    assert_eq!(open(&s), Some(2));
    // Kept current from now on, without another count.
    submit(&s, 4);
    let mut closed = a.clone();
    closed.status = CaseStatus::Approved;
    change(&s, a, closed, vec![]);
    assert_eq!(open(&s), Some(2));
    assert_eq!(s.open_cases_of_version("p", "v").unwrap(), [2, 4]);
}

fn record(i: usize) -> crate::audit::Record {
    crate::audit::Record::new(chrono::Utc::now(), "t", "token.issued", format!("t:{i}"))
}

#[test]
fn audit_entries_are_written_in_blocks_and_read_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = |s: &SledStore| s.t().unwrap().audit.len();
    {
        let s = SledStore::open(dir.path(), 1 << 20).unwrap();
        // A format-2 store held one entry per key: a block of one.
        let first = record(0).seal(0, crate::audit::GENESIS);
        s.t()
            .unwrap()
            .audit
            .insert(0u64.to_be_bytes(), serde_json::to_vec(&first).unwrap())
            .unwrap();
        // Three appends, then a flush: one block.
        for i in 1..4 {
            s.append_audit(vec![record(i)]).unwrap();
        }
        assert_eq!(blocks(&s), 1, "sealed, not yet written");
        let ticket = s.append_audit(vec![record(4), record(5)]).unwrap();
        assert!(s.flush().unwrap() >= ticket);
        assert_eq!(blocks(&s), 2);
        // Reading writes what is pending, so readers see every entry.
        s.append_audit(vec![record(6)]).unwrap();
        let all = s.audit_raw(0, 100).unwrap();
        assert_eq!(blocks(&s), 3);
        let seqs: Vec<u64> = all.iter().map(|(n, _)| *n).collect();
        assert_eq!(seqs, (0..7).collect::<Vec<_>>());
        for (n, bytes) in &all {
            let e: crate::audit::Entry = serde_json::from_slice(bytes).unwrap();
            assert_eq!(e.seq, *n);
        }
        // From the middle of a block, bounded.
        let page: Vec<u64> = s.audit_raw(2, 3).unwrap().iter().map(|(n, _)| *n).collect();
        assert_eq!(page, [2, 3, 4]);
        // Sealed but unwritten at close: written by the drop.
        s.append_audit(vec![record(7)]).unwrap();
    }
    let s = SledStore::open(dir.path(), 1 << 20).unwrap();
    s.append_audit(vec![record(8)]).unwrap();
    let verdict = crate::audit::verify(&s).unwrap();
    assert!(verdict.ok(), "{verdict:?}");
    assert_eq!(verdict.entries, 9);
}

#[test]
fn a_case_read_after_its_commit_is_the_case_as_stored_and_the_copies_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path(), 1 << 20).unwrap();
    let before = submit(&s, 3);
    let mut after = before.clone();
    after.data = serde_json::from_value(serde_json::json!({
        "capacity_kva": 1000, "ratio": 0.5, "when": "2026-11-27", "nested": { "a": [1, "x", null] }
    }))
    .unwrap();
    change(&s, before, after, vec![]);
    let recent = serde_json::to_value(s.case(3).unwrap().unwrap()).unwrap();
    s.recent.lock().cases.clear();
    let stored = serde_json::to_value(s.case(3).unwrap().unwrap()).unwrap();
    assert_eq!(recent, stored);

    // Bounded, also when the same few cases are committed over and over (each commit
    // drops its case, then writes it again).
    let mut r = Recent::default();
    for i in 0..(10 * super::recent::RECENT_CASES as u64) {
        let id = if i % 3 == 0 { i } else { i % 7 };
        r.drop_case(id);
        r.put(Arc::new(Case::blank(id)));
        assert!(r.cases.len() <= super::recent::RECENT_CASES);
        assert!(r.order.len() <= 2 * super::recent::RECENT_CASES + 1);
    }
    // The hot cases are still there.
    assert!((1..7).all(|id| r.get(id).is_some()));
}

fn fail_at(stage: FaultPoint) -> Fault {
    Arc::new(move |at| {
        if at == stage {
            Err(Error::Store("injected write failure".into()))
        } else {
            Ok(())
        }
    })
}

fn try_submit(s: &SledStore, id: u64) -> Result<Case> {
    let mut w = [CaseWrite {
        before: None,
        after: Case::blank(id),
        event: event(),
        number_scope: Some("P-2026".into()),
        timers: vec![],
        work: vec![],
        figures: None,
    }];
    s.commit(&mut w, &no_notices)?;
    Ok(w[0].after.clone())
}

#[test]
fn a_number_whose_case_was_never_written_is_reused_not_skipped() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = SledStore::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(submit(&s, 1).number, "P-2026-000001");
        // A crash after the number was written and before its case record.
        s.t()
            .unwrap()
            .state
            .insert(number_key("P-2026", 2), &99u64.to_be_bytes())
            .unwrap();
        s.t()
            .unwrap()
            .state
            .insert(key(b'N', &[b"P-2026-000002"]), &99u64.to_be_bytes())
            .unwrap();
        s.t().unwrap().db.flush().unwrap();
        assert_eq!(s.case_id_by_number("P-2026-000002").unwrap(), None);
    }
    let s = SledStore::open(dir.path(), 1 << 20).unwrap();
    let c = submit(&s, 2);
    assert_eq!(c.number, "P-2026-000002");
    assert_eq!(s.case_id_by_number("P-2026-000002").unwrap(), Some(2));
    assert_eq!(submit(&s, 3).number, "P-2026-000003");
}

#[test]
fn history_and_closed_tasks_of_an_unfinished_commit_are_invisible() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path(), 1 << 20).unwrap();
    let c = submit(&s, 7);
    assert_eq!(s.history(7).unwrap().len(), 1);
    // The next commit wrote its event with the task it closed, then the process died.
    let mut orphan = event();
    orphan.seq = c.history_len;
    let task = Task {
        id: "7-1".into(),
        step: "s".into(),
        step_name: "S".into(),
        group: "g".into(),
        assignee: None,
        claimed_by: None,
        state: crate::case::TaskState::Completed,
        created_at: chrono::Utc::now(),
        completed_at: None,
        completed_by: None,
        outcome: None,
        comment: None,
        token: 0,
        due: None,
        external: None,
    };
    let mut stored = serde_json::to_vec(&orphan).unwrap();
    stored.push(b'\n');
    serde_json::to_writer(&mut stored, &[&task]).unwrap();
    s.t()
        .unwrap()
        .state
        .insert(hist_key(7, c.history_len), stored)
        .unwrap();
    let mut open = c.clone();
    open.tasks.push(Task {
        state: crate::case::TaskState::Open,
        ..task.clone()
    });
    s.t()
        .unwrap()
        .state
        .insert(case_key(7), encode_case(&open).unwrap())
        .unwrap();
    // A format-2 store kept closed tasks under keys of their own.
    s.t()
        .unwrap()
        .state
        .insert(
            task_key(7, "7-1").unwrap(),
            serde_json::to_vec(&task).unwrap(),
        )
        .unwrap();
    // As after the crash: the process that cached the case is gone.
    s.recent.lock().cases.clear();
    assert_eq!(s.history(7).unwrap().len(), 1);
    assert!(s.closed_tasks(7).unwrap().is_empty());
}

#[test]
fn a_checkpoint_waits_for_a_lull_then_reopens_with_everything_in_place() {
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(SledStore::open(&dir.path().join("s"), 8 << 20).unwrap());
    let a = submit(&s, 1);
    // Not enough written, or written too recently: nothing happens.
    assert!(s.checkpoint(u64::MAX, Duration::ZERO).unwrap().is_none());
    assert!(s
        .checkpoint(0, Duration::from_secs(3600))
        .unwrap()
        .is_none());
    // Readers and writers on other threads meanwhile: they wait, nothing is lost.
    let busy = {
        let s = s.clone();
        std::thread::spawn(move || {
            for id in 2..200u64 {
                submit(&s, id);
                assert!(s.case(1).unwrap().is_some());
            }
        })
    };
    let mut ran = 0;
    while !busy.is_finished() || ran == 0 {
        if s.checkpoint(0, Duration::ZERO).unwrap().is_some() {
            ran += 1;
        }
    }
    busy.join().unwrap();
    assert!(ran >= 1);
    assert_eq!(s.case(1).unwrap().unwrap().number, a.number);
    let b = submit(&s, 500);
    s.flush().unwrap();
    drop(s);
    // The next open sees every case, numbered without a gap.
    let s = SledStore::open(&dir.path().join("s"), 8 << 20).unwrap();
    for id in (1..200u64).chain([500]) {
        assert!(s.case(id).unwrap().is_some(), "case {id} lost");
    }
    assert_eq!(s.case(500).unwrap().unwrap().number, b.number);
    assert_eq!(b.number, "P-2026-000200");
}

#[test]
fn a_checkpoint_that_cannot_reopen_leaves_the_store_unavailable_until_a_retry_succeeds() {
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path(), 8 << 20).unwrap();
    let a = submit(&s, 1);
    s.set_fault(Some(fail_at(FaultPoint::Reopen)));
    assert!(s.checkpoint(0, Duration::ZERO).is_err());
    assert!(!s.is_open());
    // Every call refuses with a typed, retryable error; nothing panics or hangs.
    assert!(matches!(s.history(1), Err(Error::Unavailable(_))));
    assert!(matches!(s.flush(), Err(Error::Unavailable(_))));
    s.set_fault(None);
    // Calls try again at most every REOPEN_RETRY.
    std::thread::sleep(REOPEN_RETRY + Duration::from_millis(50));
    assert_eq!(s.history(1).unwrap().len(), 1);
    assert!(s.is_open());
    assert_eq!(s.case(1).unwrap().unwrap().number, a.number);
    assert_eq!(submit(&s, 2).number, "P-2026-000002");
}

#[test]
fn a_second_store_on_the_same_folder_is_refused_as_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let _s = SledStore::open(dir.path(), 1 << 20).unwrap();
    assert!(matches!(
        SledStore::open(dir.path(), 1 << 20),
        Err(Error::InUse(_))
    ));
}

#[test]
fn a_store_of_format_5_gets_its_failed_notices_indexed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = SledStore::open(dir.path(), 1 << 20).unwrap();
        let c = submit(&s, 1);
        let now = chrono::Utc::now();
        let n = crate::notice::Notice {
            id: format!("{}-0-0", c.id),
            case: c.id,
            case_number: c.number.clone(),
            seq: 0,
            n: 0,
            event: "case.received".into(),
            channel: "email".into(),
            recipient: "applicant".into(),
            address: "a@example.org".into(),
            language: None,
            subject: String::new(),
            body: String::new(),
            payload: None,
            status: crate::notice::NoticeStatus::Failed,
            attempts: 1,
            created_at: now,
            next_attempt: None,
            done_at: Some(now),
            error: Some("refused".into()),
            read_at: None,
        };
        // Written as format 5 did: the record without its index entry.
        let t = s.t().unwrap();
        t.state
            .insert(notice_key(&n), serde_json::to_vec(&n).unwrap())
            .unwrap();
        t.meta
            .insert("format_version", &5u64.to_be_bytes())
            .unwrap();
        drop(t);
        assert!(s.failed_notices(10).unwrap().is_empty());
        s.flush().unwrap();
    }
    let s = SledStore::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(s.failed_notices(10).unwrap().len(), 1);
}

#[test]
fn a_checkpoint_that_writes_never_let_run_makes_the_store_overdue_until_it_runs() {
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    // A checkpoint after 4 KiB and an hour without writes: the hour never comes.
    let s = SledStore::open(&dir.path().join("s"), 8 << 20)
        .unwrap()
        .with_checkpoints(4096, Duration::from_secs(3600));
    assert!(!s.upkeep_overdue());
    let mut id = 1;
    while !s.upkeep_overdue() {
        submit(&s, id);
        id += 1;
        assert!(id < 10_000, "8 KiB written and never overdue");
    }
    assert!(
        s.maintain().unwrap().is_none(),
        "not quiet: no checkpoint yet"
    );
    // Once writes pause (here: no idle time asked), it runs and the store is fine again.
    assert!(s.checkpoint(4096, Duration::ZERO).unwrap().is_some());
    assert!(!s.upkeep_overdue());
}
