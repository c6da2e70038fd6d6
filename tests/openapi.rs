//! The OpenAPI description at `GET /openapi.json`: it is the generated one,
//! it documents every `/v1` route and method the router has, and the live
//! daemon answers as it says. The last part runs schemathesis (installed by
//! scripts/schemathesis into a local virtualenv) against a daemon on the real
//! RabbitMQ and Redis: any 5xx, undocumented status, content type, header or
//! body that does not match the description fails the test.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;
use serde_json::Value;

/// Test cases per operation and per phase: enough to try each parameter
/// and body shape, few enough to finish well within a minute.
const MAX_EXAMPLES: &str = "40";

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

async fn daemon(name: &str) -> Running {
    let (url, _received) = fake_receiver(vec![]).await;
    // The shared token may also post email replies, so they are tried too.
    let callers = "inbound_email_callers = [\"shared\"]\n";
    Running::start(TestConfig::new(name, &url, callers, DELIVERY_DELAY))
        .await
        .strict()
}

async fn served(run: &Running) -> Value {
    let res = run.http.get(run.url("/openapi.json")).send().await.unwrap();
    assert_eq!(res.status(), 200, "served without a token");
    res.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_description_is_the_generated_one_and_covers_every_route() {
    let run = daemon("openapi-routes").await;
    let doc = served(&run).await;
    assert_eq!(doc, cascade::http::openapi::document());
    assert!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"]
            .as_str()
            .is_some_and(|s| s.eq_ignore_ascii_case("bearer")),
        "{}",
        doc["components"]
    );
    // Every method the router serves on a /v1 path (anything but 405
    // without a token) is documented, and names the bearer scheme.
    let paths = cascade::http::v1_paths();
    assert!(paths.len() >= 6, "{paths:?}");
    for path in paths {
        let described = &doc["paths"][path];
        assert!(described.is_object(), "{path} is not in /openapi.json");
        let concrete = path.replace("{id}", "x");
        for method in METHODS {
            let res = run
                .http
                .request(method.parse().unwrap(), run.url(&concrete))
                .send()
                .await
                .unwrap();
            let op = &described[method.to_lowercase()];
            if res.status() == 405 {
                assert!(op.is_null(), "{method} {path} is described but not served");
                continue;
            }
            assert!(
                op.is_object(),
                "{method} {path} is served but not described"
            );
            assert_eq!(res.status(), 401, "{method} {path} without a token");
            assert!(
                op["security"].to_string().contains("bearer"),
                "{method} {path} does not name the bearer scheme"
            );
            assert!(op["responses"]["401"].is_object(), "{method} {path}: 401");
        }
    }
}

/// schemathesis's `st`: installed by scripts/schemathesis when missing.
/// `None` (and the reason printed) only when python3 is not installed.
fn schemathesis() -> Option<PathBuf> {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!(
            "SKIPPED: the schemathesis run of tests/openapi.rs needs python3, which is not \
             installed (Debian: apt-get install python3 python3-venv)"
        );
        return None;
    }
    let out = Command::new(repo().join("scripts/schemathesis"))
        .output()
        .expect("scripts/schemathesis runs");
    assert!(
        out.status.success(),
        "scripts/schemathesis failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(PathBuf::from(String::from_utf8(out.stdout).unwrap().trim()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_answers_as_its_description_says() {
    let Some(st) = schemathesis() else { return };
    let run = daemon("openapi-fuzz").await;
    // Hypothesis inside schemathesis now and then trips over its own
    // example generation ("Runtime Error ... Inconsistent results") with
    // no request at fault: such a run, and only such a run, is repeated.
    let (status, stdout, stderr) = fuzz(&st, &run).await;
    let internal_only =
        !status.success() && stdout.contains("Runtime Error") && !stdout.contains("FAILURES");
    let (status, stdout, stderr) = if internal_only {
        println!("schemathesis stumbled over itself; running it again:\n{stdout}");
        fuzz(&st, &run).await
    } else {
        (status, stdout, stderr)
    };
    println!("{stdout}");
    assert!(
        status.success(),
        "schemathesis found responses that do not match /openapi.json:\n{stdout}\n{stderr}"
    );
}

/// One schemathesis run against the daemon: its exit status, its output.
async fn fuzz(st: &std::path::Path, run: &Running) -> (std::process::ExitStatus, String, String) {
    let base = run.url("");
    let reports = run.cfg.dir.join("schemathesis");
    std::fs::create_dir_all(&reports).unwrap();
    let log = reports.join("output.txt");
    let mut child = Command::new(st)
        .args(["run", &format!("{base}/openapi.json"), "--url", &base])
        .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
        // Every check but one: schema-valid data may still be refused for
        // what no schema can say (the policy must be configured, the
        // notification must exist), so `positive_data_acceptance` cannot
        // hold for this API.
        .args(["--checks", "all"])
        .args(["--exclude-checks", "positive_data_acceptance"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", MAX_EXAMPLES, "--seed", "1"])
        .args(["--workers", "2", "--no-shrink"])
        .args(["--request-timeout", "10"])
        .arg("--report-dir")
        .arg(&reports)
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .current_dir(&run.cfg.dir)
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("schemathesis starts");
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > std::time::Duration::from_secs(120) {
            let _ = child.kill();
            panic!(
                "schemathesis did not finish within two minutes:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let stderr = child
        .stderr
        .take()
        .map(|mut e| {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut e, &mut s).unwrap_or_default();
            s
        })
        .unwrap_or_default();
    let stdout = std::fs::read_to_string(&log).unwrap_or_default();
    (status, stdout, stderr)
}
