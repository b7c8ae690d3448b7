//! The fuzz input turned into what portguard reads: the policy's TOML
//! text (with the owners once more as a `[[test]]` case), the port as
//! discovery would report it, and how a real run ended.

use super::input::*;
use portguard::act::{Freed, Refusal};
use portguard::discovery::proc::parse::parse_cmdline;
use portguard::evaluate::Decision;
use portguard::fixtures::HolderBuilder;
use portguard::model::{
    BindProbe, ClientFile, ClientStatus, Clients, ClientsSeen, Container, Holder, PortState,
    Protocol, SocketEntry,
};
use portguard::policy::{Action, Policy, Template};
use portguard::resolver::End;
use std::fmt::Write as _;
use std::net::SocketAddr;

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
        let _ = writeln!(out, "message = {}", quoted(&m.text()));
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
    if let Some(codes) = &a.health_status {
        let items: Vec<String> = codes
            .iter()
            .take(4)
            .map(|s| match s {
                StatusIn::Code(n) => n.to_string(),
                StatusIn::Range(a, b) => format!("\"{a}-{b}\""),
                StatusIn::Text(s) => quoted(s),
                StatusIn::Bool => "false".into(),
            })
            .collect();
        let _ = writeln!(out, "health_status = [{}]", items.join(", "));
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

fn uses_self(input: &Input) -> bool {
    input.rules.iter().take(8).any(|r| {
        r.users
            .as_ref()
            .is_some_and(|u| u.iter().take(4).any(|u| matches!(u, UserIn::Me)))
    })
}

pub fn policy_toml(input: &Input) -> String {
    let mut out = String::new();
    if let Some(n) = input.name {
        let _ = writeln!(out, "name = {}", quoted(pick(NAMES, n)));
    }
    if input.default_action.is_some()
        || input.default_grace.is_some()
        || input.default_timeout.is_some()
        || input.default_settle.is_some()
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
        if let Some(d) = &input.default_settle {
            let _ = writeln!(out, "settle = {}", quoted(&d.text()));
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
        for (key, index) in [
            ("cmdline", r.cmdline),
            ("exe", r.exe),
            ("unit", r.unit),
            ("container", r.container),
            ("image", r.image),
        ] {
            if let Some(i) = index {
                let _ = writeln!(out, "match.{key} = {}", quoted(pick(REGEXES, i)));
            }
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
        if let Some(c) = &r.clients {
            let _ = match c.live {
                Some(live) => writeln!(
                    out,
                    "match.clients = {{ dir = {}, live = {live} }}",
                    quoted(&c.dir.text())
                ),
                None => writeln!(out, "match.clients = {{ dir = {} }}", quoted(&c.dir.text())),
            };
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
        // A case that can reach a `"$self"` rule must say who runs it;
        // mostly it does, so that the rest of the policy is exercised.
        None if uses_self(input) && !input.omit_self => out.push_str("self = 1000\n"),
        None => {}
    }
    let expect = match input.expect_rule {
        Some(n) if !input.rules.is_empty() => format!("r{}", n % 12),
        _ => "default".into(),
    };
    let _ = writeln!(out, "expect = {{ rule = \"{expect}\" }}");
    if let Some(c) = &input.test_clients {
        let list = |v: &[u8]| {
            v.iter()
                .take(4)
                .map(u8::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = write!(
            out,
            "clients = {{ live = [{}], stale = [{}]",
            list(&c.live),
            list(&c.stale)
        );
        if let Some(u) = c.unreadable {
            let _ = write!(out, ", unreadable = {u}");
        }
        out.push_str(" }\n");
    }
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
            let _ = writeln!(out, "exe = {}", quoted(&e.string(EXES)));
        }
        if let Some(argv) = &o.argv {
            let items: Vec<String> = argv
                .iter()
                .take(8)
                .map(|a| quoted(&a.string(ARGS)))
                .collect();
            let _ = writeln!(out, "cmdline = [{}]", items.join(", "));
        }
        if let Some(orphan) = o.orphan {
            let _ = writeln!(out, "orphan = {orphan}");
        }
        if o.v6 {
            let _ = writeln!(out, "addr = \"[::1]:{}\"", input.port);
        }
        if let Some(u) = &o.unit {
            let _ = writeln!(out, "unit = {}", quoted(&u.name.string(UNITS)));
            if let Some(user) = u.user {
                let _ = writeln!(out, "unit_user = {}", u32::from(user) % 4 * 500);
            }
        }
        if let Some(c) = &o.container {
            let _ = write!(
                out,
                "container = {{ name = {}, image = {}",
                quoted(&c.name.string(CONTAINER_NAMES)),
                quoted(&c.image.string(IMAGES))
            );
            if let Some(id) = &c.id {
                let _ = write!(out, ", id = {}", quoted(&lossy(id)));
            }
            out.push_str(" }\n");
        }
    }
    out
}

fn container_of(c: &ContainerIn) -> Container {
    let name = c.name.string(CONTAINER_NAMES);
    Container {
        id: c
            .id
            .as_ref()
            .map_or_else(|| format!("{name:0>64}"), |id| lossy(id)),
        image: c.image.string(IMAGES),
        compose_project: name.len().is_multiple_of(2).then(|| "compose".into()),
        compose_service: name.len().is_multiple_of(3).then(|| "db\u{1b}[0m".into()),
        name,
    }
}

/// The owners as discovery would report them: argv read from raw
/// `/proc/PID/cmdline` bytes, each owner on one of a few sockets, with the
/// policy's client directories as read, a bind probe, and sockets that do
/// not hold the port (connections, TIME_WAIT).
pub fn discovered(policy: &Policy, input: &Input) -> PortState {
    let port = input.port.max(1);
    let protocol = if input.udp {
        Protocol::Udp
    } else {
        Protocol::Tcp
    };
    let holders: Vec<Holder> = input
        .owners
        .iter()
        .take(12)
        .map(|o| {
            let uid = o.uid.map_or(1000, |u| u32::from(u) % 4 * 500);
            let builder = match o.pid {
                Some(pid) => HolderBuilder::new(u32::from(pid)),
                None => HolderBuilder::unseen(uid),
            };
            let inode = 1 + u64::from(o.socket % 3);
            let addr: SocketAddr = if o.v6 {
                SocketAddr::from(([0u16, 0, 0, 0, 0, 0, 0, 1], port))
            } else {
                SocketAddr::from(([127, 0, 0, 1], port))
            };
            builder
                .with(|h| {
                    h.ppid = o.ppid.map(u32::from);
                    h.uid = uid;
                    h.user = o.user.map(|u| pick(NAMES, u).to_string());
                    h.exe = o.exe.as_ref().map(|e| e.string(EXES));
                    h.cmdline = o.argv.as_ref().map(|argv| {
                        let mut raw = Vec::new();
                        for a in argv.iter().take(8) {
                            raw.extend(a.bytes(ARGS));
                            raw.push(0);
                        }
                        parse_cmdline(&raw)
                    });
                    h.comm = o
                        .argv
                        .as_ref()
                        .and_then(|a| a.first())
                        .map(|a| a.string(ARGS));
                    h.start_ticks = o.pid.map(u64::from);
                    h.age_ms = o.pid.map(|p| u64::from(p) * 997);
                    h.orphan = o.orphan;
                    h.stopped = o.stopped;
                    h.unit = o.unit.as_ref().map(unit_of);
                    h.container = o.container.as_ref().map(container_of);
                    h.container_error = o.container_error.clone();
                    h.addrs = vec![addr];
                    h.inodes = vec![inode];
                    if o.pid.is_none() {
                        h.unknown = Some(unknown_of(o.unknown));
                    }
                })
                .build()
        })
        .collect();
    let mut inodes: Vec<u64> = holders.iter().flat_map(|h| h.inodes.clone()).collect();
    inodes.sort_unstable();
    inodes.dedup();
    let any = SocketAddr::from(([0, 0, 0, 0], 0));
    let local = SocketAddr::from(([127, 0, 0, 1], port));
    let probe = input.probe.as_ref().map(|p| match p {
        ProbeIn::Free => BindProbe::Free,
        ProbeIn::Lingering => BindProbe::Lingering,
        ProbeIn::InUse => BindProbe::InUse,
    });
    let sockets = inodes
        .iter()
        .map(|&inode| SocketEntry {
            local,
            remote: any,
            // A TCP socket that is not listening holds the port only when
            // the probe failed because of it.
            state: match (protocol, probe) {
                (Protocol::Udp, _) => 7,
                (Protocol::Tcp, Some(BindProbe::InUse)) if inode == 3 => 0x01,
                (Protocol::Tcp, _) => SocketEntry::TCP_LISTEN,
            },
            uid: 1000,
            inode,
        })
        .collect();
    let remote = SocketAddr::from(([10, 0, 0, 1], 443));
    let others = (0..input.time_wait % 5)
        .map(|_| SocketEntry {
            local,
            remote,
            state: 0x06,
            uid: 0,
            inode: 0,
        })
        .chain((0..input.connections % 3).map(|i| SocketEntry {
            local,
            remote,
            state: 0x01,
            uid: 1000,
            inode: 100 + u64::from(i),
        }))
        .collect();
    let mut state = PortState::new(port, protocol, sockets, others, holders);
    state.probe = probe;
    for (dir, seen) in policy.client_dirs().into_iter().zip(&input.clients) {
        let seen = match seen {
            SeenIn::Absent => continue,
            SeenIn::Missing => ClientsSeen::Missing,
            SeenIn::Unreadable(e) => ClientsSeen::Unreadable { error: e.clone() },
            SeenIn::Read { files, truncated } => ClientsSeen::Read {
                files: files
                    .iter()
                    .take(6)
                    .map(|&(pid, status)| ClientFile {
                        name: format!("{pid}.json\u{1b}[2J"),
                        pid: u32::from(pid),
                        status: match status % 5 {
                            0 => ClientStatus::Live,
                            1 => ClientStatus::Exited,
                            2 => ClientStatus::Zombie,
                            3 => ClientStatus::Recycled,
                            _ => ClientStatus::Caller,
                        },
                    })
                    .collect(),
                truncated: *truncated,
            },
        };
        state.clients.insert(
            dir.as_str().to_string(),
            Clients {
                dir: format!("/home/alice/{}", dir.as_str()),
                seen,
            },
        );
    }
    state
}

pub fn end_of(input: &Input, d: &Decision) -> End {
    match &input.end {
        EndIn::Free => End::Free,
        EndIn::Terminated {
            pids,
            escalated,
            escalation,
            containers,
        } => End::Freed(Freed::Terminated {
            pids: pids.iter().take(6).map(|&p| u32::from(p)).collect(),
            escalated: escalated.iter().take(6).map(|&p| u32::from(p)).collect(),
            escalation: escalation.then_some("SIGKILL"),
            containers: containers
                .iter()
                .take(3)
                .map(|c| c.string(CONTAINER_NAMES))
                .collect(),
        }),
        EndIn::Released => End::Freed(Freed::Released),
        EndIn::FreedLater => End::FreedLater,
        EndIn::Reused(p) => End::Reused(p.as_ref().map(PassedIn::build)),
        EndIn::RefusedPolicy => End::Refused(Refusal::Policy {
            template: match &d.action {
                Some(Action::Refuse { message }) => message.clone(),
                _ => Some(Template::parse(
                    "{port} {unit} {container} {image} \u{1b}[2J",
                )),
            },
        }),
        EndIn::RefusedProtected(pid, why) => End::Refused(Refusal::Protected {
            pid: u32::from(*pid),
            why: why_of(*why),
        }),
        EndIn::UnknownContainer(pid, why) => End::Refused(Refusal::UnknownContainer {
            pid: u32::from(*pid),
            why: why.clone(),
        }),
        EndIn::ContainerNotStopped(c, why) => End::Refused(Refusal::ContainerNotStopped {
            container: container_of(c),
            why: why.clone(),
        }),
        EndIn::Failed(f) => End::Failed(f.build()),
    }
}
