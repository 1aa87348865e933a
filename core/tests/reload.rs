//! Reloads and procedure versions: concurrent reloads, and versions rebuilt from the store
//! for cases that started on them.

use std::sync::Arc;

use guichet_core::clock::SystemClock;
use guichet_core::store::{SledStore, VersionRecord};
use guichet_core::Engine;

const OFFICE: &str = r#"
department(#{ id: "d", name: "Dept" });
staff(#{ id: "a", name: "A" });
group(#{ id: "g", name: "G", department: "d", members: ["a"] });
"#;

fn old_version(pattern: &str) -> String {
    format!(
        r#"procedure(#{{
    id: "old", name: "Old", department: "d", promised_days: 1, statutory_days: 2, intake: "g",
    fields: [ #{{ id: "code", label: "Code", type: "text", pattern: "{pattern}" }} ],
    start: "s",
    steps: [ #{{ id: "s", name: "S", group: "g", next: "@approved" }} ],
}});"#
    )
}

#[test]
fn a_stored_version_whose_field_pattern_no_longer_compiles_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let scripts = tmp.path().join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    std::fs::write(scripts.join("office.rhai"), OFFICE).unwrap();
    let store = Arc::new(SledStore::open(&tmp.path().join("store"), 8 << 20).unwrap());
    let e = Engine::open(store, &scripts, Arc::new(SystemClock)).unwrap();
    for (version, pattern) in [("good", "[A-Z]{2}[0-9]+"), ("bad", "([A-Z")] {
        e.store()
            .put_version(&VersionRecord {
                procedure: "old".into(),
                version: version.into(),
                file: "old.rhai".into(),
                source: old_version(pattern),
                first_loaded: chrono::Utc::now(),
            })
            .unwrap();
    }
    let good = e.procedure_version("old", "good").unwrap();
    assert!(good.fields[0].regex.is_some());
    // Dropping the pattern would let any value through the field's check.
    let err = e.procedure_version("old", "bad").unwrap_err();
    assert!(err.to_string().contains("pattern"), "{err}");
}

#[test]
fn concurrent_reloads_leave_the_folder_as_it_is_now_live() {
    let tmp = tempfile::tempdir().unwrap();
    let scripts = tmp.path().join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    std::fs::write(scripts.join("office.rhai"), OFFICE).unwrap();
    let write = |days: u32| {
        let src = old_version("[0-9]+")
            .replace("promised_days: 1", &format!("promised_days: {days}"))
            .replace("statutory_days: 2", "statutory_days: 60");
        std::fs::write(scripts.join("p.rhai"), src).unwrap();
    };
    write(1);
    let store = Arc::new(SledStore::open(&tmp.path().join("store"), 8 << 20).unwrap());
    let e = Arc::new(Engine::open(store, &scripts, Arc::new(SystemClock)).unwrap());
    for days in 2..30 {
        // Reloads race each other and the save: whichever finishes last must install
        // what the folder holds, never a rule set read before the save.
        let racing: Vec<_> = (0..3)
            .map(|_| {
                let e = e.clone();
                std::thread::spawn(move || e.reload().unwrap())
            })
            .collect();
        write(days);
        let last = {
            let e = e.clone();
            std::thread::spawn(move || e.reload().unwrap())
        };
        for r in racing {
            r.join().unwrap();
        }
        last.join().unwrap();
        assert_eq!(e.rules().procedures["old"].promised_days, days);
    }
}
