//! Staff passwords and sign-in sessions.

use std::sync::Arc;

use guichet_core::clock::ManualClock;
use guichet_core::store::SledStore;
use guichet_core::{Actor, Engine, Error};

const OFFICE: &str = r#"
department(#{ id: "d", name: "Dept" });
staff(#{ id: "li.wei", name: "Li Wei" });
group(#{ id: "g", name: "G", department: "d", members: ["li.wei"] });
"#;

fn engine() -> (Engine, Arc<ManualClock>, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let scripts = tmp.path().join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    std::fs::write(scripts.join("office.rhai"), OFFICE).unwrap();
    let store = Arc::new(SledStore::open(&tmp.path().join("store"), 8 << 20).unwrap());
    let clock = Arc::new(ManualClock::new("2026-11-30T02:00:00Z".parse().unwrap()));
    let e = Engine::open(store, &scripts, clock.clone()).unwrap();
    (e, clock, tmp)
}

#[test]
fn a_password_set_by_the_administrator_opens_a_session_that_ends_when_signed_out() {
    let (e, _, _tmp) = engine();
    assert!(!e.has_password("li.wei").unwrap());
    // Only the administrator sets passwords, for staff the office knows, long enough.
    assert!(matches!(
        e.set_password(
            &Actor::Staff("li.wei".into()),
            "li.wei",
            "a long passphrase"
        ),
        Err(Error::Forbidden(_))
    ));
    assert!(e
        .set_password(&Actor::Admin, "nobody", "a long passphrase")
        .is_err());
    assert!(e.set_password(&Actor::Admin, "li.wei", "short").is_err());
    e.set_password(&Actor::Admin, "li.wei", "a long passphrase")
        .unwrap();
    assert!(e.has_password("li.wei").unwrap());
    // A wrong password, an unknown staff member: the same answer.
    assert!(e.sign_in("li.wei", "a wrong passphrase").unwrap().is_none());
    assert!(e.sign_in("nobody", "a long passphrase").unwrap().is_none());
    let (rec, secret) = e.sign_in("li.wei", "a long passphrase").unwrap().unwrap();
    assert_eq!(rec.label, "session");
    assert_eq!(
        e.authenticate(&secret).unwrap(),
        Some(Actor::Staff("li.wei".into()))
    );
    e.end_session(&secret).unwrap();
    assert_eq!(e.authenticate(&secret).unwrap(), None);
    // The password is kept as an argon2id hash, never as itself.
    let stored = e.store().meta("password:li.wei").unwrap().unwrap();
    let stored = String::from_utf8(stored).unwrap();
    assert!(stored.starts_with("$argon2id$"), "{stored}");
    assert!(!stored.contains("passphrase"));
}

#[test]
fn a_session_lives_a_working_day() {
    let (e, clock, _tmp) = engine();
    e.set_password(&Actor::Admin, "li.wei", "a long passphrase")
        .unwrap();
    let (_, secret) = e.sign_in("li.wei", "a long passphrase").unwrap().unwrap();
    clock.advance(chrono::Duration::hours(11));
    assert!(e.authenticate(&secret).unwrap().is_some());
    clock.advance(chrono::Duration::hours(2));
    assert_eq!(e.authenticate(&secret).unwrap(), None);
}

#[test]
fn the_administrator_token_opens_a_short_session_and_nothing_else_does() {
    let (e, clock, _tmp) = engine();
    let admin = e.bootstrap_admin().unwrap().expect("first start");
    let (staff_token, _) = {
        let (rec, secret, _) = e.issue_token("admin", "li.wei", "", None).unwrap();
        (secret, rec)
    };
    assert!(e.admin_session(&staff_token).unwrap().is_none());
    assert!(e.admin_session("gch_not_a_token").unwrap().is_none());
    let (rec, session) = e.admin_session(&admin).unwrap().unwrap();
    assert_eq!(rec.label, "session");
    assert_ne!(
        session, admin,
        "the cookie never holds the administrator token"
    );
    assert_eq!(e.authenticate(&session).unwrap(), Some(Actor::Admin));
    // A session lives 12 hours; the administrator token lives on.
    clock.advance(chrono::Duration::hours(13));
    assert_eq!(e.authenticate(&session).unwrap(), None);
    assert_eq!(e.authenticate(&admin).unwrap(), Some(Actor::Admin));
}

#[test]
fn a_one_time_link_sets_a_password_once_within_three_days() {
    let (e, clock, _tmp) = engine();
    assert!(matches!(
        e.password_link(&Actor::Staff("li.wei".into()), "li.wei"),
        Err(Error::Forbidden(_))
    ));
    assert!(e.password_link(&Actor::Admin, "nobody").is_err());
    let (first, _, _) = e.password_link(&Actor::Admin, "li.wei").unwrap();
    let (secret, expires, _) = e.password_link(&Actor::Admin, "li.wei").unwrap();
    assert_eq!(expires, e.now() + chrono::Duration::hours(72));
    // Only the newest link works; the link is no token.
    assert_eq!(e.password_link_staff(&first).unwrap(), None);
    assert_eq!(
        e.password_link_staff(&secret).unwrap().as_deref(),
        Some("li.wei")
    );
    assert_eq!(e.authenticate(&secret).unwrap(), None);
    // A password too short leaves the link usable.
    assert!(matches!(
        e.redeem_password_link(&secret, "short"),
        Err(Error::Validation(_))
    ));
    assert!(e
        .redeem_password_link(&secret, "my own passphrase")
        .unwrap()
        .is_some());
    assert!(e.sign_in("li.wei", "my own passphrase").unwrap().is_some());
    // Used once, it is spent.
    assert_eq!(
        e.redeem_password_link(&secret, "another passphrase")
            .unwrap(),
        None
    );
    assert!(e.sign_in("li.wei", "another passphrase").unwrap().is_none());

    // An unused link expires after three days.
    let (late, _, _) = e.password_link(&Actor::Admin, "li.wei").unwrap();
    clock.advance(chrono::Duration::hours(72));
    assert_eq!(
        e.redeem_password_link(&late, "too late passphrase")
            .unwrap(),
        None
    );
    assert!(e.sign_in("li.wei", "my own passphrase").unwrap().is_some());
}
