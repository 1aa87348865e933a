//! The README's walkthrough, pasted as it is into a shell against a fresh server: a
//! newcomer's first commands must work. `cargo run -q --` is the built binary, the server
//! listens on a free port instead of 8080.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_walkthrough_works_when_pasted() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("<!-- walkthrough")
        .expect("the walkthrough is marked");
    let block = &readme[start..];
    let block = &block[block.find("```sh\n").unwrap() + 6..];
    let block = &block[..block.find("```").unwrap()];
    let curl = std::process::Command::new("curl").arg("--version").output();
    if !curl.is_ok_and(|o| o.status.success()) {
        assert!(
            std::env::var_os("GUICHET_CI").is_none(),
            "curl is needed in CI"
        );
        eprintln!("SKIPPED: the README walkthrough needs curl");
        return;
    }

    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let data = tmp.path().join("data");
    let _server = spawn_binary(&data, port, &[], None);
    let base = format!("http://127.0.0.1:{port}");
    wait_up(&reqwest::Client::new(), &base).await;
    let script = block
        .replace("localhost:8080", &format!("127.0.0.1:{port}"))
        .replace("cargo run -q --", env!("CARGO_BIN_EXE_guichet"));
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();
    std::os::unix::fs::symlink(
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples"),
        work.join("examples"),
    )
    .unwrap();
    let out = tokio::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(&work)
        .env("GUICHET_TOKEN_FILE", data.join("admin.token"))
        .env("GUICHET_SERVER", &base)
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{script}\n{stdout}\n{stderr}");
    // The last answer is the applicant's view: accepted, at the site survey.
    let last = stdout.lines().last().unwrap_or_default();
    let view: serde_json::Value = serde_json::from_str(last).unwrap_or_else(|_| panic!("{stdout}"));
    assert_eq!(view["status"], "in_progress", "{view}");
    assert_eq!(
        view["current_steps"],
        serde_json::json!(["Site survey"]),
        "{view}"
    );
}
