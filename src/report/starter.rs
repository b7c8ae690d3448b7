//! What `portguard init` writes and says: the starter `portguard.toml` as
//! TOML text (comments, rules and `[[test]]` cases), the rule for a port's
//! current holder, and the lines init prints. `cli::init` decides what the
//! holder rule matches; this module only words it.

use crate::model::{Holder, Protocol};
use crate::terminal::printable;
use std::fmt::Write as _;

/// The first line of the policy: editors (taplo, Even Better TOML) validate
/// and complete the file with the schema written next to it.
pub const SCHEMA_DIRECTIVE: &str = "#:schema ./policy.schema.json";

/// The file names init writes.
pub const POLICY_FILE: &str = "portguard.toml";
/// The schema's file name, next to the policy.
pub const SCHEMA_FILE: &str = "policy.schema.json";

/// Who runs portguard, as a test case's `self` gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelfUser {
    /// By name.
    Name(String),
    /// By uid: the user database has no name for it.
    Uid(u32),
}

/// A `match.user` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserValue {
    /// `"$self"`: whoever runs portguard.
    Own,
    /// A user name.
    Name(String),
    /// A uid.
    Uid(u32),
}

/// Why the holder rule does what it does: terminate a process of your own,
/// refuse anything else (as the built-in `mine` does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Your own process: terminate it.
    Own,
    /// A container's docker-proxy: stop the container instead.
    Container {
        /// Whether the container behind it was identified.
        identified: bool,
    },
    /// A process of a systemd service: stop the unit instead.
    Service {
        /// A user unit (`systemctl --user`).
        user_unit: bool,
    },
    /// pid 1, or an ancestor of portguard: never signalled.
    Protected,
    /// Its pid cannot be seen (or nothing identifies it): matched by user.
    Unseen,
    /// Another user's process.
    OtherUser,
}

impl Kind {
    /// Whether the rule terminates (else it refuses).
    pub fn terminates(self) -> bool {
        self == Kind::Own
    }
}

/// The rule for the port's current holders, and what its test case shows.
#[derive(Debug, Clone)]
pub struct HolderRule {
    /// Rule name.
    pub name: String,
    /// What it does, and why.
    pub kind: Kind,
    /// The program as the rule sees it (`node server.js`), for comments.
    pub program: String,
    /// `match.cmdline`, a regex.
    pub cmdline: Option<String>,
    /// `match.exe`, a regex.
    pub exe: Option<String>,
    /// `match.user`, one value or several.
    pub users: Vec<UserValue>,
    /// `match.unit`, a regex.
    pub unit: Option<String>,
    /// `match.container`, a regex.
    pub container: Option<String>,
    /// The holders as discovery saw them: the test case's owners.
    pub owners: Vec<Holder>,
}

/// Everything the starter policy is made of.
#[derive(Debug, Clone)]
pub struct Starter {
    /// The policy's name.
    pub name: String,
    /// `--port`, when given.
    pub port: Option<u16>,
    /// The protocol of `--port`.
    pub protocol: Protocol,
    /// Who runs portguard, for the holder rule's test cases.
    pub self_user: SelfUser,
    /// Their uid.
    pub self_uid: u32,
    /// The rule for the port's holders, when the port is held.
    pub holder: Option<HolderRule>,
    /// Example test cases to leave out (by name): they cannot pass next to
    /// the holder rule (it matches their made-up owners first).
    pub skip_tests: Vec<String>,
}

/// Grace period of the terminate rules init writes.
const GRACE: &str = "3s";

/// A TOML string for a regex: a literal string (no escapes to double)
/// when it can be one.
fn regex_str(s: &str) -> String {
    if s.contains('\'') || s.chars().any(char::is_control) {
        basic_str(s)
    } else {
        format!("'{s}'")
    }
}

/// A TOML basic string.
pub fn basic_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Text safe in a one-line TOML comment.
fn comment(s: &str) -> String {
    printable(s).into_owned()
}

fn user_value(u: &UserValue) -> String {
    match u {
        UserValue::Own => "\"$self\"".into(),
        UserValue::Name(n) => basic_str(n),
        UserValue::Uid(uid) => uid.to_string(),
    }
}

fn self_value(s: &SelfUser) -> String {
    match s {
        SelfUser::Name(n) => basic_str(n),
        SelfUser::Uid(uid) => uid.to_string(),
    }
}

const HEADER: &str = r#"# A portguard policy: what `portguard resolve PORT` (and `portguard run --port
# PORT -- CMD`) may do to whatever holds a port. Run from this directory,
# portguard reads ./portguard.toml when no --policy is given.
#
#   portguard who 3000                     who holds port 3000 (changes nothing)
#   portguard resolve 3000 --explain       what this policy would do (acts on nothing)
#   portguard check --deny-warnings portguard.toml && portguard test portguard.toml
#
# Rules are tried in file order; the first one whose `match` criteria hold for
# every process holding the port applies. When none applies, [defaults]
# action does. policy.schema.json (`portguard schema`) lets editors check and
# complete this file (taplo, Even Better TOML).
"#;

const DEFAULTS: &str = r#"[defaults]
action = "refuse"   # when no rule applies; never "terminate": portguard signals only what a rule matched
grace = "3s"        # terminate: SIGTERM, then SIGKILL after this
timeout = "10s"     # give up waiting after this
"#;

const GUARDS: &str = r#"[[rule]]
name = "service"
description = "A process of a systemd service: its unit's Restart= would start it again."
match.unit = '\.service$'
action = "refuse"
message = "port {port} is held by pid {pid} ({cmdline}) of the systemd service {unit}, which would start it again; stop the unit: `systemctl stop {unit}` (`systemctl --user stop {unit}` for a user service)"

[[rule]]
name = "container"
description = "A port a container publishes through docker-proxy: stop the container, not its proxy."
match.cmdline = '^\S*/?(docker-proxy|rootlessport)(\s|$)'
action = "refuse"
message = "port {port} is published by a container (docker-proxy pid {pid}); find it with `docker ps --filter publish={port}` and stop it with `docker stop`"
"#;

const DEV_SERVER: &str = r#"# Your dev server. Replace the placeholder with a regex for its command line
# as `portguard who PORT` shows it (argv joined by spaces), anchored to the
# program so that an editor or a `grep` naming it never matches, e.g.
#   match.cmdline = '^\S*node\s+server\.js(\s|$)'
#   match.cmdline = '^\S*python[0-9.]*\s+-m\s+uvicorn(\s|$)'
# then put its command line into the test case "your dev server is stopped".
# `portguard init --port PORT --dir DIR` writes such a rule, with its test
# case, from the process that holds PORT.
[[rule]]
name = "dev-server"
description = "Your own dev server, left running by an earlier session: stop it."
match.cmdline = '^\S*my-dev-server(\s|$)'
match.user = "$self"   # only your own processes, also when run as root
action = "terminate"
grace = "3s"
"#;

const OTHERS: &str = r#"[[rule]]
name = "others"
description = "Anything else is left alone, saying who holds the port."
action = "refuse"
message = "port {port} is held by pid {pid} ({cmdline}, user {user}), which no rule of this policy lets portguard stop"
"#;

/// The example test cases, by name, with their TOML.
const EXAMPLE_TESTS: [(&str, &str); 5] = [
    (
        "your dev server is stopped",
        r#"port = 3000
self = "alice"
expect = { rule = "dev-server", action = "terminate", outcome = "freed" }
owners = [{ pid = 4242, ppid = 4000, user = "alice", uid = 1000, exe = "/usr/local/bin/my-dev-server", cmdline = ["my-dev-server", "--port", "3000"] }]
"#,
    ),
    (
        "an editor naming your dev server is left alone",
        r#"port = 3000
self = "alice"
expect = { rule = "others", outcome = "refused" }
owners = [{ pid = 4300, ppid = 4000, user = "alice", uid = 1000, exe = "/usr/bin/vim", cmdline = ["vim", "my-dev-server.toml"] }]
"#,
    ),
    (
        "another user's dev server is left alone",
        r#"port = 3000
self = "alice"
expect = { rule = "others", outcome = "refused" }
owners = [{ pid = 5000, ppid = 1, user = "bob", uid = 1001, exe = "/usr/local/bin/my-dev-server", cmdline = ["my-dev-server"] }]
"#,
    ),
    (
        "a systemd service is left to its unit",
        r#"port = 3000
self = "alice"
expect = { rule = "service", outcome = "refused" }
owners = [{ pid = 4400, ppid = 1200, user = "alice", uid = 1000, exe = "/usr/local/bin/my-dev-server", cmdline = ["my-dev-server"], unit = "my-dev-server.service", unit_user = 1000 }]
"#,
    ),
    (
        "a container's port is refused",
        r#"port = 5432
self = "root"
expect = { rule = "container", outcome = "refused" }
owners = [{ pid = 12951, ppid = 800, user = "root", uid = 0, exe = "/usr/sbin/docker-proxy", cmdline = ["/usr/sbin/docker-proxy", "-proto", "tcp", "-host-port", "5432"] }]
"#,
    ),
];

/// How many of the example cases are about the dev-server placeholder:
/// a terminating holder rule replaces it, and them with cases of its own.
const PLACEHOLDER_TESTS: usize = 3;

/// The names of the example test cases the policy carries.
pub fn example_test_names(with_placeholder: bool) -> Vec<&'static str> {
    let skip = if with_placeholder {
        0
    } else {
        PLACEHOLDER_TESTS
    };
    EXAMPLE_TESTS
        .iter()
        .skip(skip)
        .map(|(name, _)| *name)
        .collect()
}

/// What the holder rule's `description` says.
fn holder_description(r: &HolderRule, port: u16) -> String {
    let program = &r.program;
    match r.kind {
        Kind::Own => format!(
            "{program}, your server on port {port}: stop it (SIGTERM, then SIGKILL after {GRACE})."
        ),
        Kind::Container { .. } => {
            format!("{program}: port {port} is a container's; stop the container, not its proxy.")
        }
        Kind::Service { .. } => {
            format!("{program}, of a systemd service: its unit's Restart= would start it again.")
        }
        Kind::Protected => {
            format!("{program}: pid 1 and portguard's own callers are never signalled.")
        }
        Kind::Unseen => format!("{program} on port {port}: portguard cannot see which process."),
        Kind::OtherUser => format!("{program}, another user's process: not yours to stop."),
    }
}

/// The holder rule's refusal message (a template), when it refuses.
fn holder_message(kind: Kind) -> Option<&'static str> {
    Some(match kind {
        Kind::Own => return None,
        Kind::Container { identified: true } => {
            "port {port} is published by container {container} (image {image}); stop it with `docker stop {container}`"
        }
        Kind::Container { identified: false } => {
            "port {port} is published by a container (docker-proxy pid {pid}); find it with `docker ps --filter publish={port}` and stop it with `docker stop`"
        }
        Kind::Service { user_unit: false } => {
            "port {port} is held by pid {pid} ({cmdline}) of the systemd service {unit}, which would start it again; stop the unit: `systemctl stop {unit}`"
        }
        Kind::Service { user_unit: true } => {
            "port {port} is held by pid {pid} ({cmdline}) of your systemd user service {unit}, which would start it again; stop the unit: `systemctl --user stop {unit}`"
        }
        Kind::Protected => {
            "port {port} is held by pid {pid} ({cmdline}), which portguard never signals (pid 1, or a caller of portguard)"
        }
        Kind::Unseen => {
            "port {port} is held by a process of user {user} whose pid portguard cannot see; run portguard as that user or as root to see it"
        }
        Kind::OtherUser => {
            "port {port} is held by pid {pid} ({cmdline}) of user {user}, not yours; ask its owner to stop it"
        }
    })
}

/// The holder rule, with a comment saying what it was made from.
fn holder_rule_toml(r: &HolderRule, port: u16, out: &mut String) {
    let _ = writeln!(
        out,
        "# Written by `portguard init --port {port}` for what held the port: {}.",
        comment(&held_by(&roots_only(&r.owners)))
    );
    if r.owners.len() > 1 {
        out.push_str(
            "# A rule applies when it matches every process that holds the port (their\n\
             # workers follow them); this one was made to match each of them.\n",
        );
    }
    let _ = writeln!(out, "[[rule]]\nname = {}", basic_str(&r.name));
    let _ = writeln!(
        out,
        "description = {}",
        basic_str(&holder_description(r, port))
    );
    let _ = writeln!(
        out,
        "ports = [{port}]   # widen or remove to apply it on other ports too"
    );
    if let Some(c) = &r.cmdline {
        let _ = writeln!(out, "match.cmdline = {}", regex_str(c));
    }
    if let Some(e) = &r.exe {
        let _ = writeln!(
            out,
            "match.exe = {}   # as init saw it: loosen it if the program moves (nvm, pyenv, a new venv)",
            regex_str(e)
        );
    }
    if let Some(u) = &r.unit {
        let _ = writeln!(out, "match.unit = {}", regex_str(u));
    }
    if let Some(c) = &r.container {
        let _ = writeln!(out, "match.container = {}", regex_str(c));
    }
    match r.users.as_slice() {
        [] => {}
        [one] => {
            let _ = writeln!(out, "match.user = {}", user_value(one));
        }
        many => {
            let list: Vec<String> = many.iter().map(user_value).collect();
            let _ = writeln!(out, "match.user = [{}]", list.join(", "));
        }
    }
    match holder_message(r.kind) {
        None => {
            let _ = writeln!(out, "action = \"terminate\"\ngrace = \"{GRACE}\"");
        }
        Some(message) => {
            let _ = writeln!(out, "action = \"refuse\"\nmessage = {}", basic_str(message));
        }
    }
}

/// The holder rule's test case: the owners exactly as discovery saw them.
fn holder_test_toml(s: &Starter, r: &HolderRule, port: u16, out: &mut String) {
    let (action, outcome) = if r.kind.terminates() {
        ("terminate", "freed")
    } else {
        ("refuse", "refused")
    };
    let verb = if r.kind.terminates() {
        "is stopped"
    } else {
        "is left alone"
    };
    let _ = writeln!(
        out,
        "[[test]]\nname = {}",
        basic_str(&format!(
            "{} on port {port}, as `portguard init` found it, {verb}",
            r.program
        ))
    );
    let _ = writeln!(out, "port = {port}");
    if s.protocol == Protocol::Udp {
        out.push_str("protocol = \"udp\"\n");
    }
    // `self` by name finds its uid through an owner of that name; an owner
    // of yours without a name needs `self` by uid.
    let nameless_own = r
        .owners
        .iter()
        .any(|h| h.uid == s.self_uid && h.user.is_none());
    let me = if nameless_own {
        SelfUser::Uid(s.self_uid)
    } else {
        s.self_user.clone()
    };
    let _ = writeln!(out, "self = {}", self_value(&me));
    let _ = writeln!(
        out,
        "expect = {{ rule = {}, action = \"{action}\", outcome = \"{outcome}\" }}",
        basic_str(&r.name)
    );
    for h in &r.owners {
        owner_toml(h, out);
    }
}

/// Two cases that must not reach a terminating holder rule, made from its
/// first owner: a `grep` naming the program, and the same program run by
/// another user.
fn lookalike_tests_toml(s: &Starter, r: &HolderRule, port: u16, out: &mut String) {
    let Some(h) = r.owners.first() else { return };
    let header = |name: String, out: &mut String| {
        let _ = writeln!(
            out,
            "\n[[test]]\nname = {}\nport = {port}",
            basic_str(&name)
        );
        if s.protocol == Protocol::Udp {
            out.push_str("protocol = \"udp\"\n");
        }
        let _ = writeln!(
            out,
            "self = {}\nexpect = {{ rule = \"others\", outcome = \"refused\" }}",
            self_value(&s.self_user)
        );
    };
    let pid = h.pid.unwrap_or(4242);
    header(format!("`grep {}` is left alone", r.program), out);
    let mut grep = h.clone();
    grep.pid = Some(pid);
    grep.exe = Some("/usr/bin/grep".into());
    grep.cmdline = Some(vec!["grep".into(), r.program.clone()]);
    grep.unit = None;
    grep.container = None;
    owner_toml(&grep, out);
    header(format!("{} of another user is left alone", r.program), out);
    let mut other = h.clone();
    other.pid = Some(pid);
    other.uid = if s.self_uid == 4000 { 4001 } else { 4000 };
    other.user = Some("someone-else".into());
    other.unit = None;
    other.container = None;
    owner_toml(&other, out);
}

/// One `[[test.owners]]` table.
fn owner_toml(h: &Holder, out: &mut String) {
    out.push_str("[[test.owners]]\n");
    if let Some(pid) = h.pid {
        let _ = writeln!(out, "pid = {pid}");
    }
    if let Some(ppid) = h.ppid {
        let _ = writeln!(out, "ppid = {ppid}");
    }
    if let Some(user) = &h.user {
        let _ = writeln!(out, "user = {}", basic_str(user));
    }
    let _ = writeln!(out, "uid = {}", h.uid);
    if let Some(exe) = &h.exe {
        let _ = writeln!(out, "exe = {}", basic_str(exe));
    }
    if let Some(argv) = &h.cmdline {
        let args: Vec<String> = argv.iter().map(|a| basic_str(a)).collect();
        let _ = writeln!(out, "cmdline = [{}]", args.join(", "));
    }
    if let Some(addr) = h.addrs.first() {
        let _ = writeln!(out, "addr = \"{addr}\"");
    }
    if let Some(unit) = &h.unit {
        let _ = writeln!(out, "unit = {}", basic_str(&unit.name));
        if let Some(uid) = unit.user {
            let _ = writeln!(out, "unit_user = {uid}");
        }
    }
    if let Some(c) = &h.container {
        let _ = writeln!(
            out,
            "container = {{ name = {}, image = {}, id = {} }}",
            basic_str(&c.name),
            basic_str(&c.image),
            basic_str(&c.id)
        );
    }
}

/// The whole `portguard.toml`.
pub fn policy_toml(s: &Starter) -> String {
    let mut out = String::new();
    out.push_str(SCHEMA_DIRECTIVE);
    out.push('\n');
    out.push_str(HEADER);
    out.push('\n');
    let _ = writeln!(out, "name = {}", basic_str(&s.name));
    out.push_str(
        "description = \"What portguard may do to whatever holds this project's ports.\"\n\n",
    );
    out.push_str(DEFAULTS);
    let holder = s.holder.as_ref().zip(s.port);
    // A refusing holder rule comes first, so its own message wins; a
    // terminating one after the guards (it is neither a service nor a
    // container) and instead of the placeholder.
    if let Some((r, port)) = holder.filter(|(r, _)| !r.kind.terminates()) {
        out.push('\n');
        holder_rule_toml(r, port, &mut out);
    }
    out.push('\n');
    out.push_str(GUARDS);
    let terminating = holder.filter(|(r, _)| r.kind.terminates());
    out.push('\n');
    match terminating {
        Some((r, port)) => holder_rule_toml(r, port, &mut out),
        None => out.push_str(DEV_SERVER),
    }
    out.push('\n');
    out.push_str(OTHERS);
    out.push_str(
        "\n# --- test cases: `portguard test portguard.toml` ----------------------------\n",
    );
    if let Some((r, port)) = holder {
        out.push('\n');
        holder_test_toml(s, r, port, &mut out);
    }
    if let Some((r, port)) = terminating {
        lookalike_tests_toml(s, r, port, &mut out);
    }
    let examples = example_test_names(terminating.is_none());
    for (name, body) in EXAMPLE_TESTS {
        if !examples.contains(&name) || s.skip_tests.iter().any(|n| n == name) {
            continue;
        }
        let _ = write!(out, "\n[[test]]\nname = {}\n{body}", basic_str(name));
    }
    out
}

/// `pid 4242 (node server.js, user alice)`, each group root; `and N more`.
fn held_by(owners: &[Holder]) -> String {
    let described: Vec<String> = owners.iter().map(super::words::describe).collect();
    described.join("; ")
}

/// What init says it wrote.
pub fn wrote(policy: &std::path::Path, schema: &std::path::Path) -> String {
    format!(
        "wrote {} and {} (its schema, for editors)",
        printable(&policy.display().to_string()),
        printable(&schema.display().to_string())
    )
}

/// What init says about the port it was given.
pub fn port_line(port: u16, protocol: Protocol, rule: Option<&HolderRule>) -> String {
    match rule {
        None => format!(
            "no process holds port {port}/{protocol}: no rule for a holder was written; the dev-server rule is a placeholder to fill in"
        ),
        Some(r) => {
            let what = if r.kind.terminates() {
                "terminates it"
            } else {
                "refuses to touch it"
            };
            format!(
                "port {port}/{protocol} is held by {}: rule `{}` {what}",
                held_by(&roots_only(&r.owners)),
                printable(&r.name)
            )
        }
    }
}

/// The owners whose parent is not another owner: the group roots.
fn roots_only(owners: &[Holder]) -> Vec<Holder> {
    owners
        .iter()
        .filter(|h| !owners.iter().any(|o| o.pid.is_some() && o.pid == h.ppid))
        .cloned()
        .collect()
}

/// What to run next.
pub fn next_steps(
    policy: &std::path::Path,
    elsewhere: bool,
    port: Option<u16>,
    protocol: Protocol,
) -> String {
    let file = printable(&policy.display().to_string()).into_owned();
    let port = port.unwrap_or(3000);
    // In its own directory portguard finds ./portguard.toml by itself.
    let choose = if elsewhere {
        format!(" --policy {file}")
    } else {
        String::new()
    };
    let udp = if protocol == Protocol::Udp {
        " --udp"
    } else {
        ""
    };
    format!(
        "next: portguard check --deny-warnings {file} && portguard test {file}\n      \
         portguard resolve {port}{udp}{choose} --explain   # what it would do, acting on nothing"
    )
}

/// Why init wrote nothing: a file is in the way.
pub fn exists(path: &std::path::Path) -> String {
    format!(
        "{} already exists; portguard init never overwrites a file, so nothing was written (move it away, or use --dir)",
        printable(&path.display().to_string())
    )
}

/// Why init wrote nothing: the directory or a file could not be written.
pub fn cannot_write(path: &std::path::Path, error: &std::io::Error) -> String {
    format!(
        "cannot write {}: {error}; nothing was written",
        printable(&path.display().to_string())
    )
}

/// The policy init made does not pass its own checks: a bug in init.
pub fn self_check_failed(problems: &[String]) -> String {
    format!(
        "the policy init made does not pass its own checks, so nothing was written (please report this): {}",
        problems.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_valid_toml() {
        for s in [
            "plain",
            "it's",
            "a\"b",
            "back\\slash",
            "ctl\u{1}\u{7f}",
            "tab\tnew\nline",
        ] {
            let doc = format!("a = {}\nb = {}\n", basic_str(s), regex_str(s));
            let v: toml::Table = toml::from_str(&doc).unwrap();
            assert_eq!(v["a"].as_str(), Some(s), "{doc}");
            assert_eq!(v["b"].as_str(), Some(s), "{doc}");
        }
        assert_eq!(regex_str(r"^\S*node$"), r"'^\S*node$'");
    }
}
