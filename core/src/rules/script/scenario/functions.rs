//! The functions a scenario calls, registered on its Rhai engine: each runs on the
//! scenario's `World` and fails at the caller's line.

use std::sync::Arc;

use parking_lot::Mutex;
use rhai::{Array, Dynamic, EvalAltResult, FnPtr, ImmutableString, Map, NativeCallContext};

use super::world::*;
use super::{innermost, message_of};
use crate::clock::Clock;
use crate::rating::RatingRequest;
use crate::Actor;

type Shared = Arc<Mutex<World>>;
type R<T> = Result<T, Box<EvalAltResult>>;

fn fail<T>(ctx: &NativeCallContext, message: Fail) -> R<T> {
    Err(Box::new(EvalAltResult::ErrorRuntime(
        message.into(),
        ctx.call_position(),
    )))
}

/// Runs `f` on the world, turning a failure into an error at the caller's line.
fn with<T>(
    ctx: &NativeCallContext,
    w: &Shared,
    f: impl FnOnce(&mut World) -> Result<T, Fail>,
) -> R<T> {
    let mut world = w.lock();
    match f(&mut world) {
        Ok(v) => Ok(v),
        Err(m) => fail(ctx, m),
    }
}

pub(super) fn register(e: &mut rhai::Engine, w: &Shared) {
    type S = ImmutableString;

    // --- the clock
    let s = w.clone();
    e.register_fn("at", move |ctx: NativeCallContext, text: S| -> R<()> {
        with(&ctx, &s, |w| {
            let local = parse_local(&text)?;
            let t = w
                .engine
                .rules()
                .calendar
                .instant(local)
                .ok_or_else(|| format!("{text} does not exist in the office's time zone"))?;
            w.advance_to(t)
        })
    });
    let s = w.clone();
    e.register_fn(
        "advance_days",
        move |ctx: NativeCallContext, n: i64| -> R<()> {
            with(&ctx, &s, |w| {
                let n = u32::try_from(n).map_err(|_| "days must be 0 or more".to_string())?;
                let cal = w.engine.rules().calendar.clone();
                let now = cal.local(w.clock.now());
                let day = cal.add_working_days(now.date(), n);
                let t = cal
                    .instant(day.and_time(now.time()))
                    .ok_or("that time does not exist in the office's time zone")?;
                w.advance_to(t)
            })
        },
    );
    let s = w.clone();
    e.register_fn(
        "advance_hours",
        move |ctx: NativeCallContext, n: i64| -> R<()> {
            with(&ctx, &s, |w| {
                let minutes = u32::try_from(n.saturating_mul(60))
                    .map_err(|_| "hours must be 0 or more".to_string())?;
                let t = w
                    .engine
                    .rules()
                    .calendar
                    .add_working_hours(w.clock.now(), minutes);
                w.advance_to(t)
            })
        },
    );
    let s = w.clone();
    e.register_fn("now", move |ctx: NativeCallContext| -> R<String> {
        with(&ctx, &s, |w| {
            Ok(w.engine.rules().calendar.local_time_text(w.clock.now()))
        })
    });

    // --- applicants
    let s = w.clone();
    e.register_fn(
        "submit",
        move |ctx: NativeCallContext, p: S, data: Map| -> R<String> {
            with(&ctx, &s, |w| submit(w, &p, data, Map::new()))
        },
    );
    let s = w.clone();
    e.register_fn(
        "submit",
        move |ctx: NativeCallContext, p: S, data: Map, options: Map| -> R<String> {
            with(&ctx, &s, |w| submit(w, &p, data, options))
        },
    );
    let s = w.clone();
    e.register_fn(
        "submit_bundle",
        move |ctx: NativeCallContext, b: S, shared: Map, items: Map| -> R<Array> {
            let numbers = with(&ctx, &s, |w| submit_bundle(w, &b, shared, items))?;
            Ok(numbers.into_iter().map(Dynamic::from).collect())
        },
    );
    let s = w.clone();
    e.register_fn("supply", move |ctx: NativeCallContext, c: S| -> R<()> {
        with(&ctx, &s, |w| supply(w, &c, Map::new()))
    });
    let s = w.clone();
    e.register_fn(
        "supply",
        move |ctx: NativeCallContext, c: S, options: Map| -> R<()> {
            with(&ctx, &s, |w| supply(w, &c, options))
        },
    );
    let s = w.clone();
    e.register_fn("withdraw", move |ctx: NativeCallContext, c: S| -> R<()> {
        with(&ctx, &s, |w| {
            w.on_case(&c, "withdrawal", |e, case| {
                e.withdraw(&Actor::Applicant(case.id), case.id, None, None)
            })
        })
    });
    let s = w.clone();
    e.register_fn(
        "rate",
        move |ctx: NativeCallContext, c: S, score: i64| -> R<()> {
            with(&ctx, &s, |w| {
                let score = u8::try_from(score).map_err(|_| "a score is 1 to 5".to_string())?;
                let r = RatingRequest {
                    score,
                    tags: vec![],
                    comment: None,
                };
                w.on_case(&c, "rating", |e, case| e.rate(&Actor::Public, case.id, r))
            })
        },
    );

    // --- staff
    let s = w.clone();
    e.register_fn(
        "complete",
        move |ctx: NativeCallContext, c: S, step: S| -> R<()> {
            with(&ctx, &s, |w| complete(w, &c, &step, Act::default()))
        },
    );
    let s = w.clone();
    e.register_fn(
        "complete",
        move |ctx: NativeCallContext, c: S, step: S, outcome: S| -> R<()> {
            let act = Act {
                outcome: Some(outcome.to_string()),
                ..Act::default()
            };
            with(&ctx, &s, |w| complete(w, &c, &step, act))
        },
    );
    let s = w.clone();
    e.register_fn(
        "complete",
        move |ctx: NativeCallContext, c: S, step: S, options: Map| -> R<()> {
            with(&ctx, &s, |w| {
                complete(w, &c, &step, Act::from_map(options)?)
            })
        },
    );
    let s = w.clone();
    e.register_fn(
        "external",
        move |ctx: NativeCallContext, c: S, step: S| -> R<()> {
            with(&ctx, &s, |w| external(w, &c, &step, Act::default()))
        },
    );
    let s = w.clone();
    e.register_fn(
        "external",
        move |ctx: NativeCallContext, c: S, step: S, options: Map| -> R<()> {
            with(&ctx, &s, |w| {
                external(w, &c, &step, Act::from_map(options)?)
            })
        },
    );
    let s = w.clone();
    e.register_fn(
        "return_to",
        move |ctx: NativeCallContext, c: S, step: S, to: S| -> R<()> {
            let what = format!("returning '{step}' to '{to}'");
            with(&ctx, &s, |w| {
                w.on_task(&c, &step, &what, |e, by, task| {
                    e.return_to(by, task, &to, None)
                })
            })
        },
    );
    let s = w.clone();
    e.register_fn(
        "request_supplement",
        move |ctx: NativeCallContext, c: S, step: S, items: Array| -> R<()> {
            let items: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
            with(&ctx, &s, |w| {
                w.on_task(&c, &step, "the supplement request", |e, by, task| {
                    e.request_supplement(by, task, items, None)
                })
            })
        },
    );
    let s = w.clone();
    e.register_fn("take_back", move |ctx: NativeCallContext, c: S| -> R<()> {
        with(&ctx, &s, |w| take_back(w, &c, None))
    });
    let s = w.clone();
    e.register_fn(
        "take_back",
        move |ctx: NativeCallContext, c: S, by: S| -> R<()> {
            with(&ctx, &s, |w| take_back(w, &c, Some(by.to_string())))
        },
    );
    let s = w.clone();
    e.register_fn(
        "claim",
        move |ctx: NativeCallContext, c: S, step: S| -> R<()> {
            let what = format!("claiming '{step}'");
            with(&ctx, &s, |w| {
                w.on_task(&c, &step, &what, |e, by, task| e.claim(by, task))
            })
        },
    );
    let s = w.clone();
    e.register_fn(
        "add_signer",
        move |ctx: NativeCallContext, c: S, step: S, staff: S| -> R<()> {
            with(&ctx, &s, |w| {
                w.on_task(&c, &step, "adding a signer", |e, by, task| {
                    e.add_signer(by, task, &staff, None)
                })
            })
        },
    );

    // --- what a scenario looks at and expects
    let s = w.clone();
    e.register_fn(
        "read_case",
        move |ctx: NativeCallContext, c: S| -> R<Dynamic> {
            let case = with(&ctx, &s, |w| w.case(&c))?;
            rhai::serde::to_dynamic(&case)
        },
    );
    let s = w.clone();
    e.register_fn(
        "expect_status",
        move |ctx: NativeCallContext, c: S, status: S| -> R<()> {
            with(&ctx, &s, |w| {
                let case = w.case(&c)?;
                let now = text_of(&serde_json::to_value(case.status).unwrap_or_default());
                if now == status.as_str() {
                    Ok(())
                } else {
                    Err(format!("expected case {c} to be {status}, it is {now}"))
                }
            })
        },
    );
    let s = w.clone();
    e.register_fn(
        "expect_step",
        move |ctx: NativeCallContext, c: S, step: S| -> R<()> {
            with(&ctx, &s, |w| {
                let case = w.case(&c)?;
                w.task(&case, &step).map(|_| ())
            })
        },
    );
    let s = w.clone();
    e.register_fn(
        "expect_steps",
        move |ctx: NativeCallContext, c: S, steps: Array| -> R<()> {
            with(&ctx, &s, |w| {
                let case = w.case(&c)?;
                let mut want: Vec<String> = steps.iter().map(|x| x.to_string()).collect();
                want.sort();
                want.dedup();
                if want.is_empty() {
                    want.push("none".into());
                }
                let open = open_steps(&case);
                if open == want {
                    Ok(())
                } else {
                    Err(format!(
                        "expected open steps {}, they are {}",
                        want.join(", "),
                        open.join(", ")
                    ))
                }
            })
        },
    );
    let s = w.clone();
    e.register_fn(
        "expect_group",
        move |ctx: NativeCallContext, c: S, step: S, group: S| -> R<()> {
            with(&ctx, &s, |w| {
                let case = w.case(&c)?;
                let task = w.task(&case, &step)?;
                if task.group == group.as_str() {
                    Ok(())
                } else {
                    Err(format!(
                        "expected step '{step}' with group '{group}', it is with '{}'",
                        task.group
                    ))
                }
            })
        },
    );
    let s = w.clone();
    e.register_fn(
        "expect_level",
        move |ctx: NativeCallContext, c: S, level: S| -> R<()> {
            with(&ctx, &s, |w| {
                let case = w.case(&c)?;
                let proc = w.engine.procedure_of(&case).map_err(|e| e.to_string())?;
                let now = w.engine.case_level(&w.engine.rules(), &proc, &case);
                let now = text_of(&serde_json::to_value(now).unwrap_or_default());
                if now == level.as_str() {
                    Ok(())
                } else {
                    Err(format!("expected case {c} at level {level}, it is {now}"))
                }
            })
        },
    );
    let s = w.clone();
    e.register_fn(
        "expect_card",
        move |ctx: NativeCallContext, c: S, group: S| -> R<()> {
            let mut want = Map::new();
            want.insert("to".into(), group.into());
            with(&ctx, &s, |w| expect_card(w, &c, want))
        },
    );
    let s = w.clone();
    e.register_fn(
        "expect_card",
        move |ctx: NativeCallContext, c: S, want: Map| -> R<()> {
            with(&ctx, &s, |w| expect_card(w, &c, want))
        },
    );
    let s = w.clone();
    e.register_fn(
        "expect_no_card",
        move |ctx: NativeCallContext, c: S, want: Map| -> R<()> {
            with(&ctx, &s, |w| match expect_card(w, &c, want.clone()) {
                Ok(()) => Err(format!("expected no such card on case {c}, there is one")),
                Err(m) if m.starts_with("unknown key") => Err(m),
                Err(_) => Ok(()),
            })
        },
    );
    let s = w.clone();
    e.register_fn(
        "expect_cards",
        move |ctx: NativeCallContext, c: S, n: i64| -> R<()> {
            with(&ctx, &s, |w| {
                let case = w.case(&c)?;
                if case.cards.len() as i64 == n {
                    Ok(())
                } else {
                    Err(format!(
                        "expected {n} card(s) on case {c}, there are {}",
                        case.cards.len()
                    ))
                }
            })
        },
    );
    let s = w.clone();
    e.register_fn(
        "expect_data",
        move |ctx: NativeCallContext, c: S, field: S, value: Dynamic| -> R<()> {
            with(&ctx, &s, |w| {
                let case = w.case(&c)?;
                let want: serde_json::Value =
                    rhai::serde::from_dynamic(&value).map_err(|e| e.to_string())?;
                match case.data.get(field.as_str()) {
                    Some(v) if *v == want || text_of(v) == text_of(&want) => Ok(()),
                    Some(v) => Err(format!("expected {field} = {want}, it is {v}")),
                    None => Err(format!(
                        "expected {field} = {want}, the case has no {field}"
                    )),
                }
            })
        },
    );
    let s = w.clone();
    e.register_fn(
        "expect_due",
        move |ctx: NativeCallContext, c: S, date: S| -> R<()> {
            with(&ctx, &s, |w| {
                let case = w.case(&c)?;
                let cal = &w.engine.rules().calendar;
                let due = case
                    .promised_due
                    .map(|d| cal.local_date(d).to_string())
                    .unwrap_or_else(|| "none".into());
                if due == date.as_str() {
                    Ok(())
                } else {
                    Err(format!(
                        "expected case {c} due on {date}, it is due on {due}"
                    ))
                }
            })
        },
    );
    let s = w.clone();
    e.register_fn(
        "expect_due",
        move |ctx: NativeCallContext, c: S, step: S, when: S| -> R<()> {
            with(&ctx, &s, |w| {
                let case = w.case(&c)?;
                let task = w.task(&case, &step)?;
                let cal = &w.engine.rules().calendar;
                // A date compares with the due date, a date and time with the instant.
                let due = task
                    .due
                    .map(|d| {
                        let text = cal.local_time_text(d);
                        if when.len() <= 10 {
                            text[..10].to_string()
                        } else {
                            text
                        }
                    })
                    .unwrap_or_else(|| "none".into());
                if due == when.as_str() {
                    Ok(())
                } else {
                    Err(format!(
                        "expected step '{step}' due {when}, it is due {due}"
                    ))
                }
            })
        },
    );
    e.register_fn(
        "expect",
        move |ctx: NativeCallContext, ok: bool, message: S| -> R<()> {
            if ok {
                Ok(())
            } else {
                fail(&ctx, format!("expectation failed: {message}"))
            }
        },
    );
    e.register_fn(
        "expect_error",
        move |ctx: NativeCallContext, code: S, f: FnPtr| -> R<()> {
            if code.trim().is_empty() {
                return fail(
                    &ctx,
                    "expect_error needs an error code or words of the refusal".into(),
                );
            }
            // Not under the world's lock: the function calls the scenario's own functions.
            match f.call_within_context::<Dynamic>(&ctx, ()) {
                Ok(_) => fail(&ctx, format!("expected a refusal ({code}), it was done")),
                Err(e) => {
                    let message = message_of(&innermost(*e));
                    // A stable error code, or words of a scenario's own refusal.
                    if message.contains(&format!("({code})")) || message.contains(code.as_str()) {
                        Ok(())
                    } else {
                        fail(&ctx, format!("expected a refusal ({code}), got: {message}"))
                    }
                }
            }
        },
    );
}
