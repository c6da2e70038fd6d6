//! `cascade check` on the shipped files and on broken ones, through the binary.

mod common;

use std::path::{Path, PathBuf};

use common::{cascade_command, repo};

/// Runs the binary with nothing inherited from the caller's environment:
/// (exit code, stdout, stderr).
fn cascade(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = cascade_command()
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("run cascade");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A copy of the shipped configuration in a fresh folder, to break at will.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cascade-check-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for sub in ["channels", "policies"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        for entry in std::fs::read_dir(repo().join(sub)).unwrap() {
            let p = entry.unwrap().path();
            std::fs::copy(&p, dir.join(sub).join(p.file_name().unwrap())).unwrap();
        }
    }
    std::fs::copy(repo().join("cascade.toml"), dir.join("cascade.toml")).unwrap();
    dir
}

#[test]
fn the_shipped_configuration_is_ok() {
    let (code, out, err) = cascade(&repo().join("cascade.toml"), &["check"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("ok"), "{out}");
    for p in [
        "delivery_delay",
        "abandoned_cart",
        "order_followup",
        "order_call",
    ] {
        assert!(out.contains(&format!("{p}: ")), "{out}");
    }
    // Its custom receipt words (`paid`, `called`, `no_answer`) are declared.
    assert!(!err.contains("stop_on"), "{err}");
    assert!(!err.contains("on word"), "{err}");
}

#[test]
fn a_stop_on_word_nothing_sends_is_a_warning_with_the_word_meant() {
    let dir = scratch("stop-on");
    std::fs::write(
        dir.join("policies/typo.toml"),
        "stop_on = [\"raed\", \"paid\"]\n\n[[steps]]\nchannel = \"sms\"\n",
    )
    .unwrap();
    let (code, out, err) = cascade(&dir.join("cascade.toml"), &["check"]);
    // A warning, not an error: the configuration loads.
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("ok"), "{out}");
    assert!(
        err.contains("typo.toml:1:12: warning: stop_on word `raed` is neither a built-in receipt nor declared in cascade.toml's [receipts] custom, so no receipt will ever match it; did you mean `read`?"),
        "{err}"
    );
    // `paid` is declared in the shipped cascade.toml.
    assert!(!err.contains("`paid`"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_broken_policy_is_reported_with_file_line_and_column() {
    let dir = scratch("broken");
    std::fs::write(
        dir.join("policies/broken.toml"),
        "stop_on = [\"read\"]\n\n[[steps]]\nchannel = \"vkk\"\nwait = \"30 minutes please\"\n\n[[steps]]\nchannel = \"sms\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("policies/empty.toml"),
        "description = \"nothing\"\nsteps = []\n",
    )
    .unwrap();
    let settings = std::fs::read_to_string(dir.join("cascade.toml")).unwrap();
    std::fs::write(
        dir.join("cascade.toml"),
        settings.replace("Europe/Moscow", "Europe/Atlantis"),
    )
    .unwrap();

    let (code, out, err) = cascade(&dir.join("cascade.toml"), &["check"]);
    assert_eq!(code, 1, "{out}{err}");
    // Every problem, each at its place, each saying what would be right.
    assert!(err.contains("broken.toml:4:11: error: unknown channel `vkk`; channels configured: call_centre, email, helpdesk, manager, sms, support_telegram, telegram, vk, whatsapp"), "{err}");
    assert!(
        err.contains("broken.toml:5:8: error: `30 minutes please` is not a duration"),
        "{err}"
    );
    assert!(
        err.contains("empty.toml:2:9: error: steps is empty"),
        "{err}"
    );
    assert!(
        err.contains("cascade.toml:") && err.contains("`Europe/Atlantis` is not an IANA time zone"),
        "{err}"
    );
    assert!(err.contains("4 problems found"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_missing_secret_names_the_variable() {
    let dir = scratch("secret");
    std::fs::write(
        dir.join("channels/tg2.toml"),
        "kind = \"telegram\"\nbot_token = \"${CASCADE_TEST_UNSET_TOKEN}\"\n",
    )
    .unwrap();
    let (code, _, err) = cascade(&dir.join("cascade.toml"), &["check"]);
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "tg2.toml:2:14: error: environment variable CASCADE_TEST_UNSET_TOKEN is not set"
        ),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_setting_of_the_wrong_kind_is_named() {
    let dir = scratch("kind");
    std::fs::write(
        dir.join("channels/sms2.toml"),
        "kind = \"sms\"\nprovider = \"smsru\"\nbot_token = \"x\"\n",
    )
    .unwrap();
    let (code, _, err) = cascade(&dir.join("cascade.toml"), &["check"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("sms2.toml:3:1: error: `bot_token` is not a setting of a sms channel"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_misspelt_provider_key_is_named_with_the_key_meant() {
    let dir = scratch("typo");
    std::fs::write(
        dir.join("channels/vk2.toml"),
        "kind = \"vk\"\naccess_token = \"vk-access-token\"\ncallback_secert = \"x\"\ngroup_id = \"1\"\nbase_ulr = \"https://api.vk.com/method\"\n",
    )
    .unwrap();
    let (code, _, err) = cascade(&dir.join("cascade.toml"), &["check"]);
    assert_eq!(code, 1, "{err}");
    // Both slips, each at its key, each naming the key meant.
    assert!(
        err.contains("vk2.toml:3:1: error: `callback_secert` is not a setting of a vk channel (did you mean `callback_secret`?); its settings are access_token, base_url, group_id, api_version, callback_secret, confirmation"),
        "{err}"
    );
    assert!(
        err.contains(
            "vk2.toml:5:1: error: `base_ulr` is not a setting of a vk channel (did you mean `base_url`?)"
        ),
        "{err}"
    );
    assert!(err.contains("2 problems found"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_provider_value_of_the_wrong_type_is_reported_where_it_is_written() {
    let dir = scratch("types");
    std::fs::write(
        dir.join("channels/vk3.toml"),
        "kind = \"vk\"\naccess_token = \"vk-access-token\"\ngroup_id = \"abc\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("channels/tg3.toml"),
        "kind = \"telegram\"\nbot_token = \"123:tg\"\nbase_url = \"api.telegram.org\"\n",
    )
    .unwrap();
    let (code, _, err) = cascade(&dir.join("cascade.toml"), &["check"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("vk3.toml:3:12: error: `abc` is not a VK community id; write the community's number, e.g. group_id = \"123456\""),
        "{err}"
    );
    assert!(
        err.contains("tg3.toml:3:12: error: `api.telegram.org` is not an http(s) address"),
        "{err}"
    );
    assert!(err.contains("2 problems found"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn simulate_shows_the_escalation_rules() {
    let cfg = repo().join("cascade.toml");
    let start = ["--start", "2026-11-23T12:00", "--json"];
    let sends = |extra: &[&str]| -> Vec<(String, i64)> {
        let mut args = vec!["simulate", "delivery_delay"];
        args.extend_from_slice(&start);
        args.extend_from_slice(extra);
        let (code, out, err) = cascade(&cfg, &args);
        assert_eq!(code, 0, "{err}");
        out.lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).expect("one JSON object per line")
            })
            .filter(|v| v["event"] == "sent")
            .map(|v| {
                (
                    v["channel"].as_str().unwrap().to_owned(),
                    v["offset_s"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(sends(&["--read-after", "12m"]), [("vk".into(), 0)]);
    assert_eq!(
        sends(&["--never-read"]),
        [("vk".into(), 0), ("sms".into(), 1800)]
    );
    assert_eq!(sends(&["--without", "vk"]), [("sms".into(), 0)]);
}

#[test]
fn adapter_settings_are_checked_at_load() {
    let dir = scratch("adapters");
    std::fs::write(
        dir.join("channels/sms3.toml"),
        "kind = \"sms\"\napi_id = \"x\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("channels/mail2.toml"),
        "kind = \"email\"\nhost = \"smtp.example.ru\"\nfrom = \"noreply@example.ru\"\ntls = \"maybe\"\n",
    )
    .unwrap();
    let (code, _, err) = cascade(&dir.join("cascade.toml"), &["check"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("sms3.toml: error: an sms channel needs `provider"),
        "{err}"
    );
    assert!(
        err.contains("mail2.toml: error: ") && err.contains("tls"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unknown_log_format_is_reported_where_it_is_written() {
    let dir = scratch("log-format");
    let toml = std::fs::read_to_string(dir.join("cascade.toml")).unwrap();
    let line = 1 + toml
        .lines()
        .position(|l| l.starts_with("format = \"json\""))
        .expect("the shipped cascade.toml sets log.format");
    std::fs::write(
        dir.join("cascade.toml"),
        toml.replacen("format = \"json\"", "format = \"pretty\"", 1),
    )
    .unwrap();
    let (code, _, err) = cascade(&dir.join("cascade.toml"), &["check"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "cascade.toml:{line}:10: error: `pretty` is not a log format; write \"json\" or \"text\""
        )),
        "{err}"
    );
    // The variable wins over the file, and is checked as strictly.
    let env = |value: &str| {
        cascade_command()
            .arg("--config")
            .arg(dir.join("cascade.toml"))
            .arg("check")
            .env("CASCADE_LOG_FORMAT", value)
            .output()
            .unwrap()
    };
    assert!(env("text").status.success());
    let out = env("xml");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cascade.toml: error: log.format: `xml` is not a log format"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_redis_ca_file_is_read_at_check_and_needs_tls() {
    let dir = scratch("redis-ca");
    let toml = std::fs::read_to_string(dir.join("cascade.toml")).unwrap();
    let line = 1 + toml.lines().position(|l| l == "[redis]").unwrap() + 1;
    let with_ca = |ca: &str| {
        std::fs::write(
            dir.join("cascade.toml"),
            toml.replacen("[redis]\n", &format!("[redis]\nca_file = \"{ca}\"\n"), 1),
        )
        .unwrap();
        cascade(&dir.join("cascade.toml"), &["check"])
    };
    let missing = dir.join("no-such-ca.crt");
    let (code, _, err) = with_ca(missing.to_str().unwrap());
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "cascade.toml:{line}:11: error: cannot read the CA file {}",
            missing.display()
        )),
        "{err}"
    );
    let not_pem = dir.join("ca.txt");
    std::fs::write(&not_pem, "not a certificate\n").unwrap();
    let (code, _, err) = with_ca(not_pem.to_str().unwrap());
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("holds no PEM certificate"), "{err}");
    // A CA for a connection without TLS: the shipped url is redis://.
    let pem = dir.join("ca.crt");
    std::fs::write(
        &pem,
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let (code, _, err) = with_ca(pem.to_str().unwrap());
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "cascade.toml:{line}:11: error: a CA file is set but Redis is reached without TLS: write its URL as rediss://"
        )),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_call_or_task_webhook_without_a_contact_is_a_warning_at_the_step() {
    let dir = scratch("call-contact");
    // The shipped call centre sends the customer's phone.
    let (code, _, err) = cascade(&dir.join("cascade.toml"), &["check"]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("no `contact`"), "{err}");

    let shipped = std::fs::read_to_string(dir.join("channels/call_centre.toml")).unwrap();
    let without = shipped.replace("contact = \"sms\"\n", "");
    assert_ne!(without, shipped);
    std::fs::write(dir.join("channels/call_centre.toml"), &without).unwrap();
    let policy = std::fs::read_to_string(dir.join("policies/order_followup.toml")).unwrap();
    let line = 1 + policy
        .lines()
        .position(|l| l == "channel = \"call_centre\"")
        .unwrap();
    let (code, out, err) = cascade(&dir.join("cascade.toml"), &["check"]);
    // A warning: the configuration loads and runs.
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains(&format!(
            "order_followup.toml:{line}:11: warning: channel `call_centre` is a webhook with no `contact`, so its tasks carry \"contact\": null"
        )),
        "{err}"
    );

    // Said on purpose: no warning.
    std::fs::write(
        dir.join("channels/call_centre.toml"),
        format!("contact = \"none\"\n{without}"),
    )
    .unwrap();
    let (code, _, err) = cascade(&dir.join("cascade.toml"), &["check"]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("no `contact`"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `path:line:col: error|warning: …` or `path: error|warning: …`.
fn is_finding(line: &str, level: &str) -> bool {
    let Some((head, message)) = line.split_once(&format!(": {level}: ")) else {
        return false;
    };
    let mut parts = head.rsplitn(3, ':');
    let (last, middle) = (parts.next().unwrap_or(""), parts.next());
    let positioned =
        middle.is_some_and(|m| m.parse::<u32>().is_ok()) && last.parse::<u32>().is_ok();
    let file = if positioned {
        parts.next().unwrap_or("")
    } else {
        head
    };
    file.ends_with(".toml") && !message.is_empty()
}

#[test]
fn errors_and_warnings_print_in_one_shape() {
    // The shipped files: warnings of every origin (example secrets, a
    // setting, a policy), no error.
    let dir = scratch("shape");
    std::fs::write(
        dir.join("policies/typo.toml"),
        "stop_on = [\"raed\"]\n\n[[steps]]\nchannel = \"sms\"\n",
    )
    .unwrap();
    let (code, _, err) = cascade(&dir.join("cascade.toml"), &["check"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines.len() >= 3, "{err}");
    for l in &lines {
        assert!(
            is_finding(l, "warning"),
            "not `file[:line:col]: warning: …`: {l}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("typo.toml:1:12: warning: ")),
        "{err}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("cascade.toml: warning: http.public_url")),
        "{err}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("call_centre.toml: warning: `secret`")),
        "{err}"
    );

    // Errors alike, then their count.
    std::fs::write(
        dir.join("policies/typo.toml"),
        "stop_on = [\"read\"]\n\n[[steps]]\nchannel = \"smss\"\n",
    )
    .unwrap();
    std::fs::write(dir.join("channels/broken.toml"), "kind = \"sms\"\n").unwrap();
    let (code, _, err) = cascade(&dir.join("cascade.toml"), &["check"]);
    assert_eq!(code, 1, "{err}");
    let mut lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.pop(), Some("2 problems found"), "{err}");
    for l in &lines {
        assert!(
            is_finding(l, "error"),
            "not `file[:line:col]: error: …`: {l}"
        );
    }
    assert!(
        lines.iter().any(|l| l.contains("typo.toml:4:11: error: ")),
        "{err}"
    );
    assert!(
        lines.iter().any(|l| l.contains("broken.toml: error: ")),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn broken_branches_are_reported_where_they_are_written() {
    let dir = scratch("branches");
    let policy = "\
[[steps]]
name = \"first\"
channel = \"email\"
wait = \"1h\"
on = { called = \"nowhere\", paid = \"first\" }

[[steps]]
name = \"Chat!\"
channel = \"sms\"
wait = \"1h\"

[[steps]]
name = \"chat\"
channel = \"vk\"
final = true
wait = \"1h\"

[[steps]]
name = \"chat\"
channel = \"vk\"
";
    std::fs::write(dir.join("policies/branchy.toml"), policy).unwrap();
    let (code, out, err) = cascade(&dir.join("cascade.toml"), &["check"]);
    assert_eq!(code, 1, "{out}{err}");
    for want in [
        "branchy.toml:5:17: error: step 1's `on called` names no step: `nowhere`; steps named: chat, first",
        "branchy.toml:5:35: error: step 1's `on paid` leads to the step itself",
        "branchy.toml:8:8: error: step name `Chat!` is not a word of lowercase letters, digits and `_`",
        "branchy.toml:16:8: error: step 3 is `final` (the cascade ends once it is sent), so it takes no `wait`",
        "branchy.toml:19:8: error: step name `chat` is used twice (steps 3 and 4)",
    ] {
        assert!(err.contains(want), "{want}\n---\n{err}");
    }
    assert!(err.contains("5 problems found"), "{err}");

    // A way on that never ends.
    let circle = "\
[[steps]]
name = \"a\"
channel = \"email\"
wait = \"1h\"
next = \"b\"

[[steps]]
name = \"b\"
channel = \"sms\"
wait = \"1h\"
next = \"a\"
";
    std::fs::write(dir.join("policies/branchy.toml"), circle).unwrap();
    let (code, out, err) = cascade(&dir.join("cascade.toml"), &["check"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("branchy.toml: error: the steps' waits lead round in a circle (`a` → `b` → `a`), so a cascade would never end"),
        "{err}"
    );

    // A branch word nothing sends: a warning, as in `stop_on`.
    let typo = "\
[[steps]]
channel = \"email\"
wait = \"1h\"
on = { answred = \"chat\" }

[[steps]]
name = \"chat\"
channel = \"sms\"
";
    std::fs::write(dir.join("policies/branchy.toml"), typo).unwrap();
    let (code, out, err) = cascade(&dir.join("cascade.toml"), &["check"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("branchy.toml:4:18: warning: on word `answred` is neither a built-in receipt nor declared in cascade.toml's [receipts] custom"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_intake_caller_that_names_no_token_is_an_error_where_it_is_written() {
    let dir = scratch("intake-callers");
    let path = dir.join("cascade.toml");
    let shipped = std::fs::read_to_string(&path).unwrap();
    let line = shipped
        .lines()
        .position(|l| l.starts_with("intake_callers"))
        .expect("the shipped cascade.toml lists the intake callers")
        + 1;
    std::fs::write(
        &path,
        shipped.replace(
            "intake_callers = [\"shared\"]",
            "intake_callers = [\"shared\", \"crmm\"]",
        ),
    )
    .unwrap();
    let (code, _, err) = cascade(&path, &["check"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "cascade.toml:{line}:29: error: `crmm` names no token: the callers are shared"
        )),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_inbound_email_caller_that_names_no_token_is_an_error_where_it_is_written() {
    let dir = scratch("inbound-callers");
    let path = dir.join("cascade.toml");
    let shipped = std::fs::read_to_string(&path).unwrap();
    let line = shipped
        .lines()
        .position(|l| l.starts_with("inbound_email_callers"))
        .expect("the shipped cascade.toml lists the inbound email callers")
        + 1;
    std::fs::write(
        &path,
        shipped.replace(
            "inbound_email_callers = []",
            "inbound_email_callers = [\"mta\"]",
        ),
    )
    .unwrap();
    let (code, _, err) = cascade(&path, &["check"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "cascade.toml:{line}:26: error: `mta` names no token: the callers are shared"
        )),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn simulate_plays_receipts_in_order() {
    let cfg = repo().join("cascade.toml");
    let play = |extra: &[&str]| -> Vec<serde_json::Value> {
        let mut args = vec![
            "simulate",
            "order_call",
            "--start",
            "2026-11-23T12:00",
            "--json",
        ];
        args.extend_from_slice(extra);
        let (code, out, err) = cascade(&cfg, &args);
        assert_eq!(code, 0, "{err}");
        out.lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect()
    };
    let sent = |lines: &[serde_json::Value]| -> Vec<(String, i64)> {
        lines
            .iter()
            .filter(|v| v["event"] == "sent")
            .map(|v| {
                (
                    v["channel"].as_str().unwrap().to_owned(),
                    v["offset_s"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    let called = play(&["--event", "called", "--after", "2h30m"]);
    assert_eq!(
        sent(&called),
        [
            ("email".into(), 0),
            ("call_centre".into(), 7200),
            ("telegram".into(), 9000)
        ]
    );
    let last = called.last().unwrap();
    assert_eq!(
        (&last["event"], &last["reason"]),
        (&"completed".into(), &"called".into())
    );

    let unanswered = play(&["--event", "no_answer", "--after", "2h30m"]);
    assert_eq!(sent(&unanswered)[2], ("whatsapp".into(), 9000));
    assert_eq!(unanswered.last().unwrap()["event"], "exhausted");

    // Each `--after` counts from the previous event: `called` 0s after
    // a `delivered` at 2h30m comes while the call waits.
    let later = play(&[
        "--event",
        "delivered",
        "--after",
        "2h30m",
        "--event",
        "called",
        "--after",
        "0s",
    ]);
    assert_eq!(sent(&later)[2], ("telegram".into(), 9000));

    let (code, out, err) = cascade(
        &cfg,
        &[
            "simulate",
            "order_call",
            "--event",
            "called",
            "--after",
            "2h30m",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("; receipts called at +2h 30m\n"), "{out}");

    let (code, _, err) = cascade(&cfg, &["simulate", "order_call", "--event", "called"]);
    assert_eq!(code, 1);
    assert!(err.contains("give each --event its --after"), "{err}");
}

/// Answer deadlines: the staff channels must exist and reach staff, an
/// escalation needs a deadline, a deadline needs a sink, business hours
/// must read; each reported at its place.
#[test]
fn answer_deadlines_and_staff_channels_are_checked() {
    let dir = scratch("answers");
    std::fs::write(
        dir.join("policies/replies.toml"),
        "answer_within = \"fifteen\"\nanswer_escalation = [\"support_telegram\", \"pager\"]\n\n[[steps]]\nchannel = \"email\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("policies/no_deadline.toml"),
        "answer_escalation = [\"manager\"]\n\n[[steps]]\nchannel = \"email\"\n",
    )
    .unwrap();
    let settings = std::fs::read_to_string(dir.join("cascade.toml")).unwrap();
    let broken = settings
        .replace(
            "staff = { telegram = \"${SUPPORT_CHAT_ID:--1001234567890}\" }",
            "",
        )
        .replace("days = \"mon-fri\"", "days = \"mon-funday\"");
    assert_ne!(broken, settings);
    std::fs::write(dir.join("cascade.toml"), &broken).unwrap();
    let (code, out, err) = cascade(&dir.join("cascade.toml"), &["check"]);
    assert_eq!(code, 1, "{out}{err}");
    for expected in [
        "replies.toml:1:17: error: `fifteen` is not a duration",
        "replies.toml:2:42: error: answer_escalation names channel `pager`, which has no file in channels/",
        "no_deadline.toml:1:21: error: answer_escalation without answer_within",
        "cascade.toml:82:8: error: [business_hours] `mon-funday` is not a list of weekdays",
    ] {
        assert!(err.contains(expected), "missing `{expected}` in:\n{err}");
    }

    // Without business hours' typo: the staff chat has no address.
    std::fs::write(
        dir.join("cascade.toml"),
        settings.replace(
            "staff = { telegram = \"${SUPPORT_CHAT_ID:--1001234567890}\" }",
            "",
        ),
    )
    .unwrap();
    std::fs::remove_file(dir.join("policies/replies.toml")).unwrap();
    std::fs::remove_file(dir.join("policies/no_deadline.toml")).unwrap();
    let (code, out, err) = cascade(&dir.join("cascade.toml"), &["check"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("staff channel `support_telegram` (abandoned_cart) sends to the contact `telegram`, which [replies] staff does not give"),
        "{err}"
    );

    // A deadline without a sink.
    std::fs::write(
        dir.join("cascade.toml"),
        settings.replace("sink = \"helpdesk\"", ""),
    )
    .unwrap();
    let (code, out, err) = cascade(&dir.join("cascade.toml"), &["check"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("order_call.toml:3:17: error: answer_within needs [replies] sink"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_placeholder_in_a_policy_text_is_reported_where_it_is_written() {
    let dir = scratch("placeholders");
    let policy = "\
[[steps]]
channel = \"email\"
wait = \"1h\"
text = \"Hello {{ customer.id }}, slot {{data.slot}}; literal {{{{ ok\"

[[steps]]
channel = \"sms\"
wait = \"1h\"
text = \"Your slot: {{slot}}\"

[[steps]]
channel = \"vk\"
wait = \"1h\"
subject = 'x {{data.}}'
text = \"y\"

[[steps]]
channel = \"vk\"
text = \"unclosed {{data.slot\"
";
    std::fs::write(dir.join("policies/texty.toml"), policy).unwrap();
    let (code, out, err) = cascade(&dir.join("cascade.toml"), &["check"]);
    assert_eq!(code, 1, "{out}{err}");
    for want in [
        "texty.toml:9:20: error: unknown placeholder `{{slot}}`",
        "texty.toml:14:14: error: unknown placeholder `{{data.}}`",
        "texty.toml:19:18: error: `{{` is not closed by `}}`",
    ] {
        assert!(err.contains(want), "{want}\n---\n{err}");
    }
    assert!(err.contains("3 problems found"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
