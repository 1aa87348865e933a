//! Property tests with random input (a fixed seed per run is printed, so a failure can be
//! replayed with `GUICHET_FUZZ_SEED`): the script loader, the case-number, query-code,
//! task-id and token parsers, and form data never panic, and what they refuse changes
//! nothing in the store.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use guichet_core::case::{Applicant, Data};
use guichet_core::clock::SystemClock;
use guichet_core::engine::Submission;
use guichet_core::store::SledStore;
use guichet_core::{script, Actor, Engine};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn rng() -> StdRng {
    let seed = std::env::var("GUICHET_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("GUICHET_FUZZ_SEED={seed}");
    StdRng::seed_from_u64(seed)
}

fn example_scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts")
}

/// Pieces that make mutations reach deeper than random bytes: Rhai syntax and the
/// loader's own keys.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    "#{",
    ",",
    ";",
    ":",
    "\"",
    "fn ",
    "loop {}",
    "import \"../x\" as y;",
    "next: ",
    "\"@join\"",
    "\"@approved\"",
    "group: ",
    "mode: \"all\"",
    "kind: \"parallel\"",
    "branches: []",
    "days: -1",
    "days: 99999999999999999999",
    "when: \"",
    "1/0",
    "\u{0}",
    "é",
    "procedure(#{})",
    "steps: [",
    "id: \"\"",
    "eval(\"x\")",
];

fn mutate(src: &str, rng: &mut StdRng) -> String {
    let mut s: Vec<char> = src.chars().collect();
    for _ in 0..rng.random_range(1..6) {
        if s.is_empty() {
            break;
        }
        let at = rng.random_range(0..s.len());
        match rng.random_range(0..5) {
            0 => {
                s.remove(at);
            }
            1 => s.insert(at, char::from(rng.random_range(0x20u8..0x7f))),
            2 => {
                let t = TOKENS[rng.random_range(0..TOKENS.len())];
                for (i, c) in t.chars().enumerate() {
                    s.insert(at + i, c);
                }
            }
            3 => {
                let end = (at + rng.random_range(1..40)).min(s.len());
                s.drain(at..end);
            }
            _ => s.truncate(at),
        }
    }
    s.into_iter().collect()
}

#[test]
fn the_loader_never_panics_on_mutated_scripts() {
    let mut rng = rng();
    let root = example_scripts();
    let files = script::read_dir(&root).expect("example scripts");
    let mut refused = 0;
    for _ in 0..150 {
        let mut mutated = files.clone();
        let i = rng.random_range(0..mutated.len());
        mutated[i].1 = mutate(&mutated[i].1, &mut rng);
        match script::load_sources(&root, &mutated) {
            Ok(_) => {}
            Err(problems) => {
                refused += 1;
                assert!(!problems.is_empty());
                // Every problem names a file (or the whole office) and says something.
                for p in problems {
                    assert!(!p.message.is_empty());
                }
            }
        }
    }
    assert!(
        refused > 0,
        "no mutation was refused: the mutator is not mutating"
    );
}

fn engine() -> (Engine, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let store = SledStore::open(&tmp.path().join("store"), 8 << 20).unwrap();
    let e = Engine::open(Arc::new(store), &example_scripts(), Arc::new(SystemClock)).unwrap();
    (e, tmp)
}

fn random_text(rng: &mut StdRng) -> String {
    let alphabet: Vec<char> =
        "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ-_ %/\\.é中\u{0}gca_gch_PLANTAXPOWER-2026-"
            .chars()
            .collect();
    (0..rng.random_range(0..40))
        .map(|_| alphabet[rng.random_range(0..alphabet.len())])
        .collect()
}

#[test]
fn numbers_codes_task_ids_and_tokens_from_strangers_are_refused_without_panic() {
    let mut rng = rng();
    let (e, _tmp) = engine();
    let sub = Submission {
        procedure: "power.connection".into(),
        applicant: Applicant {
            id: "91310000MA1FL0001X".into(),
            name: "A".into(),
            ..Default::default()
        },
        data: serde_json::from_value(serde_json::json!({
            "project": "p", "capacity_kva": 100, "supply_points": 1, "voltage": "10kV"
        }))
        .unwrap(),
        materials: vec![
            guichet_core::case::MaterialRef::named("licence", "l.pdf"),
            guichet_core::case::MaterialRef::named("site_plan", "p.pdf"),
        ],
    };
    let case = e.submit(&Actor::Public, sub).unwrap().cases.remove(0);
    let before = e.store().audit_raw(0, usize::MAX).unwrap().len();
    let staff = Actor::Staff("zhou.qiang".into());
    for _ in 0..3000 {
        let t = random_text(&mut rng);
        assert!(
            e.track(&case.number, &t).is_err() || t.trim().eq_ignore_ascii_case(&case.query_code)
        );
        let _ = e.track(&t, &case.query_code);
        let _ = e.case_id(&t);
        let _ = e.visible_case(&staff, &t);
        assert!(e.authenticate(&t).unwrap().is_none());
        assert!(e.authenticate(&format!("gca_{t}")).unwrap().is_none());
        assert!(e.claim(&staff, &t).is_err());
        let _ = guichet_core::outbox::parse_notice_id(&t);
    }
    // The real applicant token works; one changed character does not.
    let token = e.applicant_token(case.id).unwrap();
    assert_eq!(
        e.authenticate(&token).unwrap(),
        Some(Actor::Applicant(case.id))
    );
    let mut bad = token.clone().into_bytes();
    let last = bad.len() - 1;
    bad[last] = if bad[last] == b'0' { b'1' } else { b'0' };
    assert_eq!(
        e.authenticate(std::str::from_utf8(&bad).unwrap()).unwrap(),
        None
    );
    // Nothing the strangers did reached the case or the audit log.
    let after = e.case(case.id).unwrap();
    assert_eq!(after.rev, case.rev);
    assert_eq!(e.store().audit_raw(0, usize::MAX).unwrap().len(), before);
}

fn random_value(rng: &mut StdRng, depth: u32) -> serde_json::Value {
    use serde_json::json;
    match rng.random_range(0..if depth > 2 { 5 } else { 7 }) {
        0 => json!(null),
        1 => json!(rng.random::<bool>()),
        2 => json!(rng.random_range(-1e12..1e12)),
        3 => json!(rng.random::<i64>()),
        4 => json!(random_text(rng)),
        5 => json!((0..rng.random_range(0..4))
            .map(|_| random_value(rng, depth + 1))
            .collect::<Vec<_>>()),
        _ => {
            let mut m = serde_json::Map::new();
            for _ in 0..rng.random_range(0..4) {
                m.insert(random_text(rng), random_value(rng, depth + 1));
            }
            serde_json::Value::Object(m)
        }
    }
}

#[test]
fn random_form_data_is_validated_never_trusted() {
    let mut rng = rng();
    let (e, _tmp) = engine();
    let keys = [
        "project",
        "capacity_kva",
        "supply_points",
        "voltage",
        "other",
    ];
    let mut accepted = 0;
    for _ in 0..500 {
        let mut data = Data::new();
        for k in keys {
            if rng.random_bool(0.7) {
                data.insert(k.to_string(), random_value(&mut rng, 0));
            }
        }
        let sub = Submission {
            procedure: "power.connection".into(),
            applicant: Applicant {
                id: random_text(&mut rng),
                name: random_text(&mut rng),
                ..Default::default()
            },
            data,
            materials: vec![
                guichet_core::case::MaterialRef::named("licence", "l.pdf"),
                guichet_core::case::MaterialRef::named("site_plan", "p.pdf"),
            ],
        };
        match e.submit(&Actor::Public, sub) {
            Ok(done) => {
                accepted += 1;
                // Whatever was accepted has the declared types.
                let c = &done.cases[0];
                assert!(c.data.get("capacity_kva").is_some_and(|v| v.is_number()));
            }
            Err(err) => assert!(
                matches!(
                    err,
                    guichet_core::Error::Validation(_) | guichet_core::Error::Invalid(_)
                ),
                "{err}"
            ),
        }
    }
    eprintln!("{accepted} of 500 random forms were valid");
}
