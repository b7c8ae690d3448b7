//! Structured fuzzing of evaluation and rendering.
//!
//! The input is a small policy built from a grammar of rule fragments (ports,
//! regexes from a pool, users, orphan, every action with its settings, and
//! the odd invalid fragment), plus a list of owners with optional pid, ppid,
//! uid, user, exe and cmdline (argv as raw bytes: newlines, escapes, invalid
//! UTF-8). The owners are evaluated twice:
//!
//! - as a `[[test]]` case of the policy (TOML → `case_state` / `case_context`),
//!   exactly what `portguard test` does;
//! - as discovered holders built directly (argv through `parse_cmdline`, shared
//!   or separate sockets, IPv4/IPv6, protected pids), as a real run would.
//!
//! Each decision is rendered (`trace_text`, `resolve_json`, `result_text`,
//! the refuse message) and its invariants are asserted, so a wrong decision
//! is a crash too, not only a panic inside portguard.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use portguard::actions::Step;
use portguard::discovery::group_holders;
use portguard::discovery::procfs::parse_cmdline;
use portguard::evaluate::{evaluate, render_template, Context, Decision, Protected};
use portguard::model::{Holder, Outcome, PortState, Protocol, SocketEntry};
use portguard::policy::{load_source, Policy, PolicySource};
use portguard::policytest::{case_context, case_state, run_case};
use portguard::render::{self, PolicyInfo};
use portguard::resolver::PortReport;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::OnceLock;

const REGEXES: &[&str] = &[
    r"^\S*python[0-9.]*(\s+-[A-Za-z]+)*\s+(-m\s+headroom\.cli|(\S*/)?headroom)\s+proxy(\s|$)",
    r"/python[0-9.]*( \(deleted\))?$",
    "proxy",
    "^$",
    ".*",
    "x*",
    r"\n",
    "(?s)a.b",
    "(?m)^b$",
    "[",
    "(",
    r"\p{Greek}",
    "^/usr/bin/",
    r"(?i)NGINX",
    r"\bworker\b",
    "\u{fffd}",
    "(a{100}){100}",
    r"\x00",
    "é+",
];
const NAMES: &[&str] = &[
    "alice", "bob", "root", "nobody", "", "ålice", "a\"b", "$self",
];
const EXES: &[&str] = &[
    "/usr/bin/python3.12",
    "/usr/sbin/nginx",
    "/home/alice/.venv/bin/headroom",
    "/usr/bin/python3 (deleted)",
    "",
    "relative/python3",
    "/tmp/a\nb",
];
const ARGS: &[&str] = &[
    "python3",
    "/home/alice/.venv/bin/python3",
    "/home/alice/.venv/bin/headroom",
    "-m",
    "headroom.cli",
    "proxy",
    "--port",
    "8787",
    "nginx: worker process",
    "",
    "a\nb",
    "\u{1b}[2J",
    "grep",
    "{pid}",
];

fn pick<'a>(pool: &[&'a str], i: u8) -> &'a str {
    pool[usize::from(i) % pool.len()]
}

#[derive(Arbitrary, Debug)]
enum Dur {
    Ms(u16),
    S(u8),
    M(u8),
    Zero,
    Huge,
    Garbage(String),
}

impl Dur {
    fn text(&self) -> String {
        match self {
            Dur::Ms(n) => format!("{n}ms"),
            Dur::S(n) => format!("{n}s"),
            Dur::M(n) => format!("{n}m"),
            Dur::Zero => "0s".into(),
            Dur::Huge => "500000000000years".into(),
            Dur::Garbage(s) => s.clone(),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Sig {
    Term,
    Kill,
    Int,
    Stop,
    Lower,
    Other(String),
}

impl Sig {
    fn text(&self) -> String {
        match self {
            Sig::Term => "SIGTERM".into(),
            Sig::Kill => "KILL".into(),
            Sig::Int => "SIGINT".into(),
            Sig::Stop => "SIGSTOP".into(),
            Sig::Lower => "sighup".into(),
            Sig::Other(s) => s.clone(),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Escalate {
    No,
    Yes,
    Signal(Sig),
    Number(i8),
}

#[derive(Arbitrary, Debug)]
enum Kind {
    Terminate,
    Wait,
    Refuse,
    Reuse,
    Bogus,
}

impl Kind {
    fn text(&self) -> &'static str {
        match self {
            Kind::Terminate => "terminate",
            Kind::Wait => "wait",
            Kind::Refuse => "refuse",
            Kind::Reuse => "reuse",
            Kind::Bogus => "explode",
        }
    }
}

#[derive(Arbitrary, Debug)]
enum HealthIn {
    Tcp,
    Http(u8),
    Remote,
    Other(String),
}

#[derive(Arbitrary, Debug)]
struct ActionIn {
    kind: Kind,
    then: Option<Kind>,
    signal: Option<Sig>,
    grace: Option<Dur>,
    escalate: Option<Escalate>,
    timeout: Option<Dur>,
    message: Option<String>,
    health: Option<HealthIn>,
    health_body: Option<u8>,
}

#[derive(Arbitrary, Debug)]
enum PortIn {
    Int(i32),
    Single(u16),
    Range(u16, u16),
    Text(String),
    Bool,
}

#[derive(Arbitrary, Debug)]
enum UserIn {
    Me,
    Uid(u8),
    Name(u8),
    Negative(i64),
    Var(String),
}

#[derive(Arbitrary, Debug)]
struct RuleIn {
    name: u8,
    ports: Option<Vec<PortIn>>,
    cmdline: Option<u8>,
    exe: Option<u8>,
    users: Option<Vec<UserIn>>,
    orphan: Option<bool>,
    action: ActionIn,
    /// An arbitrary line appended to the rule (usually an error).
    extra: Option<String>,
}

#[derive(Arbitrary, Debug)]
enum Text {
    Pool(u8),
    Raw(Vec<u8>),
}

impl Text {
    fn bytes(&self, pool: &[&str]) -> Vec<u8> {
        match self {
            Text::Pool(i) => pick(pool, *i).as_bytes().to_vec(),
            Text::Raw(b) => b.clone(),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct OwnerIn {
    pid: Option<u8>,
    ppid: Option<u8>,
    uid: Option<u8>,
    user: Option<u8>,
    exe: Option<Text>,
    argv: Option<Vec<Text>>,
    orphan: Option<bool>,
    v6: bool,
    /// Which socket this owner holds when built as a discovered holder.
    socket: u8,
}

#[derive(Arbitrary, Debug)]
enum SelfIn {
    Uid(u8),
    Name(u8),
}

#[derive(Arbitrary, Debug)]
enum DefaultIn {
    Refuse,
    Wait,
    Reuse,
    Terminate,
}

#[derive(Arbitrary, Debug)]
struct Input {
    name: Option<u8>,
    default_action: Option<DefaultIn>,
    default_grace: Option<Dur>,
    default_timeout: Option<Dur>,
    rules: Vec<RuleIn>,
    owners: Vec<OwnerIn>,
    port: u16,
    udp: bool,
    self_user: Option<SelfIn>,
    expect_rule: Option<u8>,
    protected: Vec<u8>,
    system_users: bool,
}

/// A TOML basic string: quotes, backslashes and control characters escaped.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn action_toml(out: &mut String, a: &ActionIn) {
    let _ = writeln!(out, "action = \"{}\"", a.kind.text());
    if let Some(t) = &a.then {
        let _ = writeln!(out, "then = \"{}\"", t.text());
    }
    if let Some(s) = &a.signal {
        let _ = writeln!(out, "signal = {}", quoted(&s.text()));
    }
    if let Some(d) = &a.grace {
        let _ = writeln!(out, "grace = {}", quoted(&d.text()));
    }
    if let Some(e) = &a.escalate {
        let v = match e {
            Escalate::No => "false".to_string(),
            Escalate::Yes => "true".to_string(),
            Escalate::Signal(s) => quoted(&s.text()),
            Escalate::Number(n) => n.to_string(),
        };
        let _ = writeln!(out, "escalate = {v}");
    }
    if let Some(d) = &a.timeout {
        let _ = writeln!(out, "timeout = {}", quoted(&d.text()));
    }
    if let Some(m) = &a.message {
        let _ = writeln!(out, "message = {}", quoted(m));
    }
    if let Some(h) = &a.health {
        let v = match h {
            HealthIn::Tcp => "tcp".to_string(),
            HealthIn::Http(n) => format!("http://127.0.0.1:{{port}}/livez{n}"),
            HealthIn::Remote => "http://example.com/".to_string(),
            HealthIn::Other(s) => s.clone(),
        };
        let _ = writeln!(out, "health = {}", quoted(&v));
    }
    if let Some(b) = a.health_body {
        let _ = writeln!(out, "health_body = {}", quoted(pick(REGEXES, b)));
    }
}

fn user_toml(u: &UserIn) -> String {
    match u {
        UserIn::Me => "\"$self\"".into(),
        UserIn::Uid(n) => (u32::from(*n) % 4 * 500).to_string(),
        UserIn::Name(i) => quoted(pick(NAMES, *i)),
        UserIn::Negative(n) => n.to_string(),
        UserIn::Var(s) => quoted(&format!("${s}")),
    }
}

fn policy_toml(input: &Input) -> String {
    let mut out = String::new();
    if let Some(n) = input.name {
        let _ = writeln!(out, "name = {}", quoted(pick(NAMES, n)));
    }
    if input.default_action.is_some()
        || input.default_grace.is_some()
        || input.default_timeout.is_some()
    {
        out.push_str("[defaults]\n");
        if let Some(a) = &input.default_action {
            let a = match a {
                DefaultIn::Refuse => "refuse",
                DefaultIn::Wait => "wait",
                DefaultIn::Reuse => "reuse",
                DefaultIn::Terminate => "terminate",
            };
            let _ = writeln!(out, "action = \"{a}\"");
        }
        if let Some(d) = &input.default_grace {
            let _ = writeln!(out, "grace = {}", quoted(&d.text()));
        }
        if let Some(d) = &input.default_timeout {
            let _ = writeln!(out, "timeout = {}", quoted(&d.text()));
        }
    }
    for r in input.rules.iter().take(8) {
        out.push_str("[[rule]]\n");
        let _ = writeln!(out, "name = \"r{}\"", r.name % 12);
        if let Some(ports) = &r.ports {
            let items: Vec<String> = ports
                .iter()
                .take(6)
                .map(|p| match p {
                    PortIn::Int(n) => n.to_string(),
                    PortIn::Single(n) => n.to_string(),
                    PortIn::Range(a, b) => format!("\"{a}-{b}\""),
                    PortIn::Text(s) => quoted(s),
                    PortIn::Bool => "true".into(),
                })
                .collect();
            let _ = writeln!(out, "ports = [{}]", items.join(", "));
        }
        if let Some(i) = r.cmdline {
            let _ = writeln!(out, "match.cmdline = {}", quoted(pick(REGEXES, i)));
        }
        if let Some(i) = r.exe {
            let _ = writeln!(out, "match.exe = {}", quoted(pick(REGEXES, i)));
        }
        if let Some(users) = &r.users {
            match users.as_slice() {
                [one] => {
                    let _ = writeln!(out, "match.user = {}", user_toml(one));
                }
                many => {
                    let items: Vec<String> = many.iter().take(4).map(user_toml).collect();
                    let _ = writeln!(out, "match.user = [{}]", items.join(", "));
                }
            }
        }
        if let Some(o) = r.orphan {
            let _ = writeln!(out, "match.orphan = {o}");
        }
        action_toml(&mut out, &r.action);
        if let Some(extra) = &r.extra {
            out.push_str(extra);
            out.push('\n');
        }
    }
    // The owners once more, as a policy test case.
    out.push_str("[[test]]\nname = \"fuzz\"\n");
    let _ = writeln!(out, "port = {}", input.port);
    if input.udp {
        out.push_str("protocol = \"udp\"\n");
    }
    match &input.self_user {
        Some(SelfIn::Uid(n)) => {
            let _ = writeln!(out, "self = {}", u32::from(*n) % 4 * 500);
        }
        Some(SelfIn::Name(i)) => {
            let _ = writeln!(out, "self = {}", quoted(pick(NAMES, *i)));
        }
        None => {}
    }
    let expect = match input.expect_rule {
        Some(n) if !input.rules.is_empty() => format!("r{}", n % 12),
        _ => "default".into(),
    };
    let _ = writeln!(out, "expect = {{ rule = \"{expect}\" }}");
    for o in input.owners.iter().take(12) {
        out.push_str("[[test.owners]]\n");
        if let Some(p) = o.pid {
            let _ = writeln!(out, "pid = {p}");
        }
        if let Some(p) = o.ppid {
            let _ = writeln!(out, "ppid = {p}");
        }
        // Leaving `uid` out is an error of the case; keep it rare.
        let _ = writeln!(
            out,
            "uid = {}",
            o.uid.map_or(1000, |u| u32::from(u) % 4 * 500)
        );
        if let Some(u) = o.user {
            let _ = writeln!(out, "user = {}", quoted(pick(NAMES, u)));
        }
        if let Some(e) = &o.exe {
            let _ = writeln!(out, "exe = {}", quoted(&lossy(&e.bytes(EXES))));
        }
        if let Some(argv) = &o.argv {
            let items: Vec<String> = argv
                .iter()
                .take(8)
                .map(|a| quoted(&lossy(&a.bytes(ARGS))))
                .collect();
            let _ = writeln!(out, "cmdline = [{}]", items.join(", "));
        }
        if let Some(orphan) = o.orphan {
            let _ = writeln!(out, "orphan = {orphan}");
        }
        if o.v6 {
            let _ = writeln!(out, "addr = \"[::1]:{}\"", input.port);
        }
    }
    out
}

/// The owners as discovery would report them: argv read from raw
/// `/proc/PID/cmdline` bytes, each owner on one of a few sockets.
fn discovered(input: &Input) -> PortState {
    let port = input.port.max(1);
    let holders: Vec<Holder> = input
        .owners
        .iter()
        .take(12)
        .map(|o| {
            let inode = 1 + u64::from(o.socket % 3);
            let addr: SocketAddr = if o.v6 {
                SocketAddr::from(([0u16, 0, 0, 0, 0, 0, 0, 1], port))
            } else {
                SocketAddr::from(([127, 0, 0, 1], port))
            };
            let cmdline = o.argv.as_ref().map(|argv| {
                let mut raw = Vec::new();
                for a in argv.iter().take(8) {
                    raw.extend(a.bytes(ARGS));
                    raw.push(0);
                }
                parse_cmdline(&raw)
            });
            Holder {
                pid: o.pid.map(u32::from),
                ppid: o.ppid.map(u32::from),
                uid: o.uid.map_or(1000, |u| u32::from(u) % 4 * 500),
                user: o.user.map(|u| pick(NAMES, u).to_string()),
                exe: o.exe.as_ref().map(|e| lossy(&e.bytes(EXES))),
                cmdline,
                comm: o
                    .argv
                    .as_ref()
                    .and_then(|a| a.first())
                    .map(|a| lossy(&a.bytes(ARGS))),
                start_ticks: o.pid.map(u64::from),
                age_ms: o.pid.map(|p| u64::from(p) * 997),
                orphan: o.orphan,
                addrs: vec![addr],
                inodes: vec![inode],
                unknown_reason: o
                    .pid
                    .is_none()
                    .then(|| "cannot inspect: not your process".into()),
            }
        })
        .collect();
    let mut inodes: Vec<u64> = holders.iter().flat_map(|h| h.inodes.clone()).collect();
    inodes.sort_unstable();
    inodes.dedup();
    let protocol = if input.udp {
        Protocol::Udp
    } else {
        Protocol::Tcp
    };
    PortState {
        port,
        protocol,
        sockets: inodes
            .iter()
            .map(|&inode| SocketEntry {
                local: SocketAddr::from(([127, 0, 0, 1], port)),
                remote: SocketAddr::from(([0, 0, 0, 0], 0)),
                state: SocketEntry::TCP_LISTEN,
                uid: 1000,
                inode,
            })
            .collect(),
        others: Vec::new(),
        groups: group_holders(&holders),
        holders,
    }
}

/// What must hold of every decision, whatever the input.
fn check_invariants(policy: &Policy, state: &PortState, ctx: &Context, d: &Decision) {
    // Groups partition the holders.
    let mut seen = vec![0u32; state.holders.len()];
    for g in &state.groups {
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
    if state.holders.is_empty() {
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
        assert_eq!(t.groups.len(), state.groups.len());
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
    let all: Vec<usize> = state
        .groups
        .iter()
        .flat_map(|g| g.members.clone())
        .collect();
    assert_eq!(d.targets, all, "targets are every member of every group");
    let action = d.action.as_ref().expect("held port has an action");
    if action.may_signal() && d.blocked.is_none() {
        for &i in &d.targets {
            let pid = state.holders[i]
                .pid
                .expect("an unblocked terminate target has a pid");
            assert!(
                ctx.protected.iter().all(|p| p.pid != pid),
                "protected pid {pid} is a target of an unblocked decision"
            );
        }
    }
}

fn render_all(policy: &Policy, state: PortState, d: Decision) {
    let message = match state.groups.first() {
        Some(g) => render_template(
            "{port} {pid} {user} {uid} {exe} {cmdline} {rule} {",
            state.port,
            &state.holders[g.root],
            d.rule.as_deref(),
        ),
        None => "free".into(),
    };
    let refuse = portguard::actions::refuse_message(None, &state, d.rule.as_deref());
    let summary = portguard::actions::holders_summary(&state);
    let info = PolicyInfo::new(policy, "--policy");
    let mut report = PortReport {
        port: state.port,
        protocol: state.protocol,
        outcome: d.planned,
        dry_run: true,
        message,
        rounds: vec![(state, d)],
        steps: Vec::new(),
    };
    let _ = render::trace_text(&report, &info);
    let _ = render::result_text(&report);
    report.dry_run = false;
    report.steps.push(Step {
        at_ms: 0,
        event: "skipped",
        pid: Some(1),
        signal: Some("SIGTERM"),
        detail: Some(refuse + &summary),
    });
    let _ = render::trace_text(&report, &info);
    let json = render::resolve_json(&[report], &info, portguard::exit::Exit::Refused);
    let doc: serde_json::Value = serde_json::from_str(&json).expect("resolve_json is JSON");
    assert!(doc["ports"][0]["holders"].is_array());
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
    // 1. The owners as a policy test case.
    for case in &policy.tests {
        let state = case_state(case);
        let ctx = case_context(case);
        let d = evaluate(&policy, &state, &ctx);
        check_invariants(&policy, &state, &ctx, &d);
        let _ = run_case(&policy, case);
        render_all(&policy, state, d);
    }
    // 2. The owners as discovered holders, some pids protected.
    let state = discovered(&input);
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
            why: "pid 1 (init) is never signalled".into(),
        }],
        system_users: input.system_users,
    };
    for &pid in input.protected.iter().take(4) {
        ctx.protected.push(Protected {
            pid: u32::from(pid),
            why: "an ancestor of portguard".into(),
        });
    }
    let d = evaluate(&policy, &state, &ctx);
    check_invariants(&policy, &state, &ctx, &d);
    render_all(&policy, state, d);
});
