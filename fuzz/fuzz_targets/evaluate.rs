//! Structured fuzzing of evaluation and rendering.
//!
//! The input is a small policy built from a grammar of rule fragments (ports,
//! regexes from a pool for every regex criterion, users, orphan, client
//! directories, every action with its settings, and the odd invalid
//! fragment), plus a list of owners with optional pid, ppid, uid, user, exe,
//! cmdline (argv as raw bytes: newlines, escapes, bidi controls, invalid
//! UTF-8), systemd unit and container. The owners are evaluated twice:
//!
//! - as a `[[test]]` case of the policy (TOML → `case_state` / `case_context`),
//!   exactly what `portguard test` does, with the case's client records;
//! - as discovered holders built directly (argv through `parse_cmdline`, shared
//!   or separate sockets, IPv4/IPv6, protected pids, docker-proxy holders with
//!   and without their container, client directories that are missing,
//!   unreadable or hold live and stale records, a bind probe and sockets in
//!   TIME_WAIT), as a real run would.
//!
//! Each decision is rendered (`trace_text`, `result_text`, `who_text`,
//! `resolve_json`, `who_json`, the refuse message), as a plan and as the end
//! of a real run (any `End`, any steps), and its invariants are asserted, so
//! a wrong decision or an unsafe rendering is a crash too, not only a panic
//! inside portguard.

#![no_main]

#[path = "evaluate/build.rs"]
mod build;
#[path = "evaluate/input.rs"]
mod input;

use build::{discovered, end_of, policy_toml};
use input::{pick, why_of, Input, SelfIn, NAMES};
use libfuzzer_sys::fuzz_target;
use portguard::act::steps::{Event, Step};
use portguard::evaluate::cases::{case_context, case_state, run_case};
use portguard::evaluate::{evaluate, Blocked, Context, Decision, Protected, ProtectedWhy};
use portguard::model::{ClientStatus, ClientsSeen, Holder, Outcome, PortState};
use portguard::policy::{load_source, ActionKind, Policy, PolicySource, Template};
use portguard::report::explain::trace_text;
use portguard::report::human::{result_text, who_text};
use portguard::report::json::{resolve_json, who_json};
use portguard::report::words::{holders_summary, message, refuse_message};
use portguard::report::PolicyInfo;
use portguard::resolver::{End, PortReport, Round};
use portguard::terminal::is_unsafe;
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// Whether the holder is dockerd's (or podman's) port forwarder, by argv[0]
/// or the executable's base name: written here again, not taken from the
/// library, so that a regression of the library's test is caught.
fn docker_proxy(h: &Holder) -> bool {
    let base = |p: &str| p.rsplit('/').next().unwrap_or(p).to_string();
    h.cmdline
        .as_ref()
        .and_then(|a| a.first())
        .map(|a| base(a))
        .into_iter()
        .chain(h.exe.as_deref().map(base))
        .any(|b| b == "docker-proxy" || b == "rootlessport")
}

/// Whether a client directory is known to have a live client: `None` when
/// it is unknown (unreadable, not read, or truncated without a live one).
fn live_clients(state: &PortState, dir: &str) -> Option<bool> {
    match &state.clients.get(dir)?.seen {
        ClientsSeen::Missing => Some(false),
        ClientsSeen::Unreadable { .. } => None,
        ClientsSeen::Read { files, truncated } => {
            let live = files.iter().any(|f| f.status == ClientStatus::Live);
            (live || !truncated).then_some(live)
        }
    }
}

/// What must hold of every decision, whatever the input.
fn check_invariants(policy: &Policy, state: &PortState, ctx: &Context, d: &Decision) {
    // Groups partition the holders.
    let mut seen = vec![0u32; state.holders().len()];
    for g in state.groups() {
        assert_eq!(
            g.members.first(),
            Some(&g.root),
            "a group starts with its root"
        );
        for &m in &g.members {
            seen[m] += 1;
        }
    }
    assert!(
        seen.iter().all(|&n| n == 1),
        "every holder is in exactly one group: {seen:?}"
    );
    if state.holders().is_empty() {
        assert_eq!(d.planned, Outcome::Free);
        assert!(d.rule.is_none() && d.action.is_none());
        return;
    }
    assert_eq!(d.trace.len(), policy.rules.len());
    let winner = d.trace.iter().position(|t| t.applied);
    assert_eq!(
        d.rule.as_deref(),
        winner.map(|i| policy.rules[i].name.as_str()),
        "the first applying rule wins"
    );
    if let Some(w) = winner {
        let t = &d.trace[w];
        assert!(t.reached);
        assert_eq!(t.groups.len(), state.groups().len());
        for g in &t.groups {
            assert!(g.matched && g.checks.iter().all(|c| c.held), "{t:?}");
        }
        assert!(t.ports.as_ref().is_none_or(|c| c.held));
        assert!(d.trace[w + 1..].iter().all(|t| !t.reached && !t.applied));
        assert_eq!(
            d.action.as_ref().map(|a| a.kind()),
            Some(policy.rules[w].action.kind())
        );
    } else {
        assert_eq!(
            d.action.as_ref().map(|a| a.kind()),
            Some(policy.defaults.action.kind()),
            "no rule applies: the default"
        );
    }
    // `match.clients`: a rule never applies while whether there are live
    // clients is unknown (an unreadable directory above all), and its
    // check holds exactly when what is known is what the rule asks for.
    for (rule, t) in policy.rules.iter().zip(&d.trace) {
        let Some(want) = &rule.criteria.clients else {
            continue;
        };
        let dir = want.dir.as_str();
        let live = live_clients(state, dir);
        if live.is_none() {
            assert!(
                !t.applied,
                "rule {} applied although the clients of {dir:?} are unknown: {:?}",
                rule.name,
                state.clients.get(dir)
            );
        }
        if matches!(
            state.clients.get(dir).map(|c| &c.seen),
            Some(ClientsSeen::Unreadable { .. })
        ) {
            assert!(
                !t.applied,
                "rule {} applied on an unreadable directory",
                rule.name
            );
        }
        for g in &t.groups {
            let checks: Vec<_> = g
                .checks
                .iter()
                .filter(|c| c.criterion == "clients")
                .collect();
            assert_eq!(checks.len(), 1, "one clients check per group: {g:?}");
            assert_eq!(checks[0].held, live == Some(want.live), "{g:?}");
        }
    }
    let all: Vec<usize> = state
        .groups()
        .iter()
        .flat_map(|g| g.members.clone())
        .collect();
    assert_eq!(d.targets, all, "targets are every member of every group");
    let action = d.action.as_ref().expect("held port has an action");
    let holders = state.holders();
    if action.may_signal() && d.blocked.is_none() {
        for &i in &d.targets {
            let h = &holders[i];
            let pid = h.pid.expect("an unblocked terminate target has a pid");
            assert!(
                ctx.protected.iter().all(|p| p.pid != pid),
                "protected pid {pid} is a target of an unblocked decision"
            );
            assert!(
                !docker_proxy(h) || h.container.is_some(),
                "an unblocked decision that may signal targets docker-proxy pid {pid}, whose container is unknown"
            );
        }
    }
    // A docker-proxy whose container is unknown is never signalled: a
    // terminate against it plans a refusal.
    let proxy = d.targets.iter().any(|&i| {
        docker_proxy(&holders[i]) && holders[i].pid.is_some() && holders[i].container.is_none()
    });
    if action.may_signal() && proxy {
        assert!(
            d.blocked.is_some(),
            "a docker-proxy without a container is not blocked"
        );
    }
    if action.kind() == ActionKind::Terminate {
        let expected = match &d.blocked {
            None => Outcome::Freed,
            Some(Blocked::Protected { .. } | Blocked::Container { .. }) => Outcome::Refused,
            Some(Blocked::NoPid { .. }) => Outcome::Failed,
        };
        assert_eq!(d.planned, expected, "{:?}", d.blocked);
        if proxy {
            assert_eq!(
                d.planned,
                Outcome::Refused,
                "terminate against an unknown container"
            );
        }
    }
}

/// Human output must not carry raw control or bidi characters: only the
/// line breaks portguard itself writes.
fn assert_printable(what: &str, text: &str) {
    if let Some(c) = text.chars().find(|&c| c != '\n' && is_unsafe(c)) {
        panic!("{what} contains the raw character {c:?}:\n{text:?}");
    }
}

fn render_all(policy: &Policy, input: &Input, state: PortState, d: Decision) {
    let template = Template::parse(
        "{port} {pid} {user} {uid} {exe} {cmdline} {rule} {container} {image} {unit} {",
    );
    let refuse = refuse_message(Some(&template), &state, d.rule.as_deref());
    let _ = refuse_message(None, &state, d.rule.as_deref());
    let summary = holders_summary(&state);
    let info = PolicyInfo::new(policy, "--policy");
    let who = [
        state.clone(),
        PortState::new(
            state.port,
            state.protocol,
            Vec::new(),
            Vec::new(),
            Vec::new(),
        ),
    ];
    let text = who_text(&who);
    assert_printable("who", &text);
    let json = who_json(&who);
    let doc: serde_json::Value = serde_json::from_str(&json).expect("who_json is JSON");
    assert!(doc["ports"][0]["holders"].is_array(), "{json}");

    // As `--explain` shows it.
    let mut report = PortReport {
        port: state.port,
        protocol: state.protocol,
        dry_run: true,
        rounds: vec![Round {
            state: state.clone(),
            decision: d.clone(),
        }],
        steps: Vec::new(),
        end: if state.holders().is_empty() {
            End::Free
        } else {
            End::Planned
        },
        now: None,
        lingering: 0,
    };
    let plan = message(&report);
    assert_printable("--explain", &trace_text(&report, &info));
    assert_printable("the plan", &result_text(&report));
    let json = resolve_json(
        std::slice::from_ref(&report),
        &info,
        report.exit(),
        Vec::new(),
    );
    let doc: serde_json::Value = serde_json::from_str(&json).expect("resolve_json is JSON");
    let port = &doc["ports"][0];
    assert_eq!(port["outcome"].as_str(), Some(d.planned.as_str()), "{json}");
    assert_eq!(port["message"].as_str(), Some(plan.as_str()), "{json}");
    // JSON stays exact: argv as discovered, not escaped.
    let holders = port["holders"].as_array().expect("holders");
    assert_eq!(holders.len(), state.holders().len());
    for (doc, h) in holders.iter().zip(state.holders()) {
        let argv: Option<Vec<String>> =
            serde_json::from_value(doc["cmdline"].clone()).expect("cmdline");
        assert_eq!(argv, h.cmdline, "JSON argv is exact");
    }

    // As the end of a real run, with steps and a later discovery.
    report.dry_run = false;
    report.end = end_of(input, &d);
    report.lingering = usize::from(input.lingering % 4);
    report.now = (input.lingering % 2 == 1).then(|| who[1].clone());
    for (at, e) in input.steps.iter().take(12) {
        report.steps.push(Step {
            at_ms: u64::from(*at),
            event: e.build(),
        });
    }
    report.steps.push(Step {
        at_ms: 0,
        event: Event::Error {
            pid: 1,
            signal: "SIGTERM",
            error: refuse + &summary,
        },
    });
    // A second round with the port free again.
    if input.lingering % 3 == 2 {
        report.rounds.push(Round {
            state: who[1].clone(),
            decision: evaluate(policy, &who[1], &Context::default()),
        });
    }
    let _ = message(&report);
    assert_printable("the trace", &trace_text(&report, &info));
    assert_printable("the result", &result_text(&report));
    let json = resolve_json(
        &[report],
        &info,
        portguard::exit::Exit::Refused,
        vec!["a note\u{1b}".into()],
    );
    let doc: serde_json::Value = serde_json::from_str(&json).expect("resolve_json is JSON");
    assert!(doc["ports"][0]["holders"].is_array(), "{json}");
}

/// `PORTGUARD_FUZZ_PRINT=1`: print each generated policy (to read a crash).
fn print_policies() -> bool {
    static PRINT: OnceLock<bool> = OnceLock::new();
    *PRINT.get_or_init(|| std::env::var_os("PORTGUARD_FUZZ_PRINT").is_some())
}

fuzz_target!(|input: Input| {
    let text = policy_toml(&input);
    if print_policies() {
        eprintln!("----- generated policy -----\n{text}----------------------------");
    }
    let Ok(policy) = load_source(&text, PolicySource::File("fuzz.toml".into())) else {
        return;
    };
    // What `resolve` does once a port is held: compile every regex (one
    // over the size limit is an error; evaluation must still not panic).
    if let Err(invalid) = policy.compile() {
        let _ = invalid.render_all();
    }
    let _ = policy.longest_timeout();
    for dir in policy.client_dirs() {
        let env = |name: &str| match name {
            "HOME" => Some("/home/alice".to_string()),
            "HEADROOM_WORKSPACE_DIR" => Some("/srv/ws\n".to_string()),
            _ => None,
        };
        let _ = dir.expand(input.port, &env);
        let _ = dir.expand(input.port, &|_| None);
    }
    // 1. The owners as a policy test case.
    for case in &policy.tests {
        let state = case_state(&policy, case);
        let ctx = case_context(case);
        let d = evaluate(&policy, &state, &ctx);
        check_invariants(&policy, &state, &ctx, &d);
        let result = run_case(&policy, case);
        assert_eq!(
            result.rule, d.rule,
            "`portguard test` decides as evaluate does"
        );
        assert_eq!(result.outcome, d.planned);
        render_all(&policy, &input, state, d);
    }
    // 2. The owners as discovered holders, some pids protected.
    let state = discovered(&policy, &input);
    let mut ctx = Context {
        self_uid: match input.self_user {
            Some(SelfIn::Uid(n)) => Some(u32::from(n) % 4 * 500),
            _ => None,
        },
        self_name: match input.self_user {
            Some(SelfIn::Name(i)) => Some(pick(NAMES, i).to_string()),
            _ => None,
        },
        protected: vec![Protected {
            pid: 1,
            why: ProtectedWhy::Init,
        }],
        uids: input.uids.as_ref().map(|list| {
            list.iter()
                .take(6)
                .map(|&(name, uid)| {
                    (
                        pick(NAMES, name).to_string(),
                        uid.map(|u| u32::from(u) % 4 * 500),
                    )
                })
                .collect::<BTreeMap<_, _>>()
        }),
    };
    for &(pid, why) in input.protected.iter().take(4) {
        ctx.protected.push(Protected {
            pid: u32::from(pid),
            why: why_of(why),
        });
    }
    let d = evaluate(&policy, &state, &ctx);
    check_invariants(&policy, &state, &ctx, &d);
    render_all(&policy, &input, state, d);
});
