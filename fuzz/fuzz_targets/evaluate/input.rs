//! The structured fuzz input of the `evaluate` target: a grammar of policy
//! fragments, owners, client observations, run endings and steps, with the
//! pools of hostile and ordinary values they pick from.

use arbitrary::Arbitrary;
use portguard::act::health::{Failed, HealthResult, Passed};
use portguard::act::steps::{Event, Skip};
use portguard::act::Failure;
use portguard::evaluate::ProtectedWhy;
use portguard::model::{Unit, Unknown};
use portguard::policy::ActionKind;

pub const REGEXES: &[&str] = &[
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
    r"\.service$",
    r"^user@\d+\.service$",
    "^pg",
    "^postgres(:|$)",
    "docker-proxy",
    ".",
    r"\x1b",
    "\u{202e}",
    r"\w{60}",
];
pub const NAMES: &[&str] = &[
    "alice", "bob", "root", "nobody", "", "ålice", "a\"b", "$self",
];
pub const EXES: &[&str] = &[
    "/usr/bin/python3.12",
    "/usr/sbin/nginx",
    "/home/alice/.venv/bin/headroom",
    "/usr/bin/python3 (deleted)",
    "",
    "relative/python3",
    "/tmp/a\nb",
    "/usr/bin/docker-proxy",
    "/usr/libexec/podman/rootlessport",
    "/usr/bin/evil\u{202e}yp.revres",
];
pub const ARGS: &[&str] = &[
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
    "/usr/bin/docker-proxy",
    "docker-proxy",
    "-proto",
    "tcp",
    "-host-port",
    "-container-ip",
    "172.17.0.2",
    "rootlessport",
    "\u{1b}]0;owned\u{7}",
    "\u{202e}",
    "\u{2066}x\u{2069}",
    "line\u{2028}sep",
    "zero\u{200b}width",
    "\u{feff}bom",
    "\u{9b}31m",
];
pub const UNITS: &[&str] = &[
    "nginx.service",
    "session-3.scope",
    "user@1000.service",
    "app.service",
    "",
    "evil\u{1b}[2J.service",
    "a\u{202e}b.service",
    "init.scope",
];
pub const CONTAINER_NAMES: &[&str] = &[
    "pgweb",
    "web-1",
    "",
    "evil\u{1b}]0;title\u{7}",
    "x\u{2066}y",
    "compose-db-1",
];
pub const IMAGES: &[&str] = &[
    "postgres:16",
    "ghcr.io/a/b@sha256:0123456789abcdef",
    "",
    "img\nnewline",
    "redis:7\u{202e}",
];
/// `match.clients.dir` templates: valid ones (`{port}`, `~`, `$VAR`,
/// `${VAR:-default}` with a `~` default) and invalid ones.
pub const DIRS: &[&str] = &[
    "${HEADROOM_WORKSPACE_DIR:-~/.headroom}/clients/{port}",
    "~/clients/{port}",
    "/run/app/{port}/clients",
    "$HOME/c",
    "${NOPE}",
    "${X:-}",
    "~",
    "{port}",
    "~user/x",
    "/a/${B:-~/c}/{port}{port}",
    "",
    "${HOME",
    "$",
    "${1X}",
    "/x/$-",
    "${A B}",
    "/tmp/\u{1b}[2J/{port}",
];

pub fn pick<'a>(pool: &[&'a str], i: u8) -> &'a str {
    pool[usize::from(i) % pool.len()]
}

#[derive(Arbitrary, Debug)]
pub enum Dur {
    Ms(u16),
    S(u8),
    M(u8),
    Zero,
    Huge,
    Garbage(String),
}

impl Dur {
    pub fn text(&self) -> String {
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
pub enum Sig {
    Term,
    Kill,
    Int,
    Stop,
    Lower,
    Other(String),
}

impl Sig {
    pub fn text(&self) -> String {
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
pub enum Escalate {
    No,
    Yes,
    Signal(Sig),
    Number(i8),
}

#[derive(Arbitrary, Debug)]
pub enum Kind {
    Terminate,
    Wait,
    Refuse,
    Reuse,
    Bogus,
}

impl Kind {
    pub fn text(&self) -> &'static str {
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
pub enum HealthIn {
    Tcp,
    Http(u8),
    Remote,
    Other(String),
}

#[derive(Arbitrary, Debug)]
pub enum StatusIn {
    Code(u16),
    Range(u16, u16),
    Text(String),
    Bool,
}

/// A `message` template: the placeholders (old and new) around text.
#[derive(Arbitrary, Debug)]
pub enum MessageIn {
    Placeholders,
    Raw(String),
}

impl MessageIn {
    pub fn text(&self) -> String {
        match self {
            MessageIn::Placeholders => {
                "{port} {pid} {user} {uid} {exe} {cmdline} {rule} {container} {image} {unit} {nope} {"
                    .into()
            }
            MessageIn::Raw(s) => s.clone(),
        }
    }
}

#[derive(Arbitrary, Debug)]
pub struct ActionIn {
    pub kind: Kind,
    pub then: Option<Kind>,
    pub signal: Option<Sig>,
    pub grace: Option<Dur>,
    pub escalate: Option<Escalate>,
    pub timeout: Option<Dur>,
    pub message: Option<MessageIn>,
    pub health: Option<HealthIn>,
    pub health_body: Option<u8>,
    pub health_status: Option<Vec<StatusIn>>,
}

#[derive(Arbitrary, Debug)]
pub enum PortIn {
    Int(i32),
    Single(u16),
    Range(u16, u16),
    Text(String),
    Bool,
}

#[derive(Arbitrary, Debug)]
pub enum UserIn {
    Me,
    Uid(u8),
    Name(u8),
    Negative(i64),
    Var(String),
}

#[derive(Arbitrary, Debug)]
pub enum DirIn {
    Pool(u8),
    Raw(String),
}

impl DirIn {
    pub fn text(&self) -> String {
        match self {
            DirIn::Pool(i) => pick(DIRS, *i).to_string(),
            DirIn::Raw(s) => s.clone(),
        }
    }
}

#[derive(Arbitrary, Debug)]
pub struct ClientsIn {
    pub dir: DirIn,
    /// `None`: the key is left out (an error).
    pub live: Option<bool>,
}

#[derive(Arbitrary, Debug)]
pub struct RuleIn {
    pub name: u8,
    pub ports: Option<Vec<PortIn>>,
    pub cmdline: Option<u8>,
    pub exe: Option<u8>,
    pub users: Option<Vec<UserIn>>,
    pub orphan: Option<bool>,
    pub clients: Option<ClientsIn>,
    pub unit: Option<u8>,
    pub container: Option<u8>,
    pub image: Option<u8>,
    pub action: ActionIn,
    /// An arbitrary line appended to the rule (usually an error).
    pub extra: Option<String>,
}

#[derive(Arbitrary, Debug)]
pub enum Text {
    Pool(u8),
    Raw(Vec<u8>),
}

impl Text {
    pub fn bytes(&self, pool: &[&str]) -> Vec<u8> {
        match self {
            Text::Pool(i) => pick(pool, *i).as_bytes().to_vec(),
            Text::Raw(b) => b.clone(),
        }
    }

    pub fn string(&self, pool: &[&str]) -> String {
        lossy(&self.bytes(pool))
    }
}

#[derive(Arbitrary, Debug)]
pub struct UnitIn {
    pub name: Text,
    /// The uid of the user manager running it (a user unit).
    pub user: Option<u8>,
}

#[derive(Arbitrary, Debug)]
pub struct ContainerIn {
    pub name: Text,
    pub image: Text,
    pub id: Option<Vec<u8>>,
}

#[derive(Arbitrary, Debug)]
pub struct OwnerIn {
    pub pid: Option<u8>,
    pub ppid: Option<u8>,
    pub uid: Option<u8>,
    pub user: Option<u8>,
    pub exe: Option<Text>,
    pub argv: Option<Vec<Text>>,
    pub orphan: Option<bool>,
    pub unit: Option<UnitIn>,
    pub container: Option<ContainerIn>,
    /// Why the container behind a docker-proxy could not be identified.
    pub container_error: Option<String>,
    pub stopped: Option<bool>,
    /// Why the pid is unknown, for an owner without one.
    pub unknown: u8,
    pub v6: bool,
    /// Which socket this owner holds when built as a discovered holder.
    pub socket: u8,
}

#[derive(Arbitrary, Debug)]
pub enum SelfIn {
    Uid(u8),
    Name(u8),
}

#[derive(Arbitrary, Debug)]
pub enum DefaultIn {
    Refuse,
    Wait,
    Reuse,
    Terminate,
}

#[derive(Arbitrary, Debug)]
pub struct TestClientsIn {
    pub live: Vec<u8>,
    pub stale: Vec<u8>,
    pub unreadable: Option<bool>,
}

/// What reading one client directory gave, in a discovered state.
#[derive(Arbitrary, Debug)]
pub enum SeenIn {
    /// Not read at all (no entry for the directory).
    Absent,
    Missing,
    Unreadable(String),
    Read {
        files: Vec<(u8, u8)>,
        truncated: bool,
    },
}

#[derive(Arbitrary, Debug)]
pub enum ProbeIn {
    Free,
    Lingering,
    InUse,
}

#[derive(Arbitrary, Debug)]
pub enum PassedIn {
    Tcp,
    Http(u16),
    Skipped,
}

impl PassedIn {
    pub fn build(&self) -> Passed {
        match self {
            PassedIn::Tcp => Passed::Tcp {
                addr: "127.0.0.1:8787".into(),
            },
            PassedIn::Http(status) => Passed::Http {
                url: "http://127.0.0.1:8787/\u{1b}[2J".into(),
                status: *status,
            },
            PassedIn::Skipped => Passed::Skipped,
        }
    }
}

#[derive(Arbitrary, Debug)]
pub enum FailedIn {
    NoAddress,
    Connect(String),
    Request(String),
    Status(u16),
    ReadBody(String),
    Body(u16, String),
}

impl FailedIn {
    pub fn build(&self) -> Failed {
        let url = "http://127.0.0.1:8787/livez".to_string();
        match self {
            FailedIn::NoAddress => Failed::NoAddress,
            FailedIn::Connect(e) => Failed::Connect {
                addr: "[::1]:8787".into(),
                error: e.clone(),
            },
            FailedIn::Request(e) => Failed::Request {
                url,
                error: e.clone(),
            },
            FailedIn::Status(s) => Failed::Status { url, status: *s },
            FailedIn::ReadBody(e) => Failed::ReadBody {
                url,
                error: e.clone(),
            },
            FailedIn::Body(s, body) => Failed::Body {
                url,
                status: *s,
                pattern: "ok\u{1b}".into(),
                body: body.clone(),
            },
        }
    }
}

#[derive(Arbitrary, Debug)]
pub enum FailureIn {
    Timeout(Vec<u8>, u64),
    PermissionDenied(u8, u8, Option<u8>),
    PidUnknown(u8, u8),
    IdentityUnknown(u8),
    SignalFailed(u8, String),
    Unhealthy(FailedIn),
    WaitTimeout(u64),
    Retaken {
        rounds: u8,
        supervisor: Option<u8>,
        unit: Option<UnitIn>,
    },
    Interrupted(Vec<u8>),
    TimeWait(u8),
    NotBindable,
    LockTimeout(u64),
    LockError(String),
    Internal,
}

pub fn unknown_of(i: u8) -> Unknown {
    match i % 6 {
        0 => Unknown::NotYourProcess,
        1 => Unknown::NotVisible,
        2 => Unknown::HiddenOwner,
        3 => Unknown::ForeignPidNamespace,
        4 => Unknown::LsofCannotInspect,
        _ => Unknown::TestOwner,
    }
}

pub fn why_of(i: u8) -> ProtectedWhy {
    match i % 3 {
        0 => ProtectedWhy::Init,
        1 => ProtectedWhy::Portguard,
        _ => ProtectedWhy::Ancestor,
    }
}

pub fn unit_of(u: &UnitIn) -> Unit {
    Unit {
        name: u.name.string(UNITS),
        user: u.user.map(|n| u32::from(n) % 4 * 500),
    }
}

impl FailureIn {
    pub fn build(&self) -> Failure {
        let pids = |v: &[u8]| v.iter().take(6).map(|&p| u32::from(p)).collect::<Vec<_>>();
        match self {
            FailureIn::Timeout(p, ms) => Failure::Timeout {
                pids: pids(p),
                after_ms: *ms,
            },
            FailureIn::PermissionDenied(pid, uid, user) => Failure::PermissionDenied {
                pid: u32::from(*pid),
                uid: u32::from(*uid),
                user: user.map(|u| pick(NAMES, u).to_string()),
            },
            FailureIn::PidUnknown(uid, why) => Failure::PidUnknown {
                uid: u32::from(*uid) % 4 * 500,
                why: unknown_of(*why),
            },
            FailureIn::IdentityUnknown(pid) => Failure::IdentityUnknown {
                pid: u32::from(*pid),
            },
            FailureIn::SignalFailed(pid, e) => Failure::SignalFailed {
                pid: u32::from(*pid),
                error: e.clone(),
            },
            FailureIn::Unhealthy(f) => Failure::Unhealthy { failed: f.build() },
            FailureIn::WaitTimeout(ms) => Failure::WaitTimeout { timeout_ms: *ms },
            FailureIn::Retaken {
                rounds,
                supervisor,
                unit,
            } => Failure::Retaken {
                rounds: usize::from(*rounds),
                supervisor: supervisor.map(u32::from),
                unit: unit.as_ref().map(unit_of),
            },
            FailureIn::Interrupted(p) => Failure::Interrupted {
                sent: pids(p).into_iter().map(|p| (p, "SIGTERM")).collect(),
            },
            FailureIn::TimeWait(n) => Failure::TimeWait {
                sockets: usize::from(*n),
            },
            FailureIn::NotBindable => Failure::NotBindable,
            FailureIn::LockTimeout(ms) => Failure::LockTimeout { waited_ms: *ms },
            FailureIn::LockError(e) => Failure::LockError { error: e.clone() },
            FailureIn::Internal => Failure::Internal,
        }
    }
}

/// How the "real run" rendering of a decision ends.
#[derive(Arbitrary, Debug)]
pub enum EndIn {
    Free,
    Terminated {
        pids: Vec<u8>,
        escalated: Vec<u8>,
        escalation: bool,
        containers: Vec<Text>,
    },
    Released,
    FreedLater,
    Reused(Option<PassedIn>),
    /// The refusal by policy, with the rule's template (as evaluated).
    RefusedPolicy,
    RefusedProtected(u8, u8),
    UnknownContainer(u8, String),
    ContainerNotStopped(ContainerIn, String),
    Failed(FailureIn),
}

#[derive(Arbitrary, Debug)]
pub enum EventIn {
    Signal(u8),
    Resumed(u8),
    Skipped(u8, bool, u8),
    Exited(u8),
    Free,
    Settle(u64),
    Retaken,
    Timeout,
    Health(bool, Option<PassedIn>, FailedIn),
    Fallback(u8),
    Rediscover(u8),
    Interrupted,
    Locked(u64),
    Error(u8, String),
    StopContainer(Vec<u8>, Text),
    ContainerStopped(Vec<u8>),
    Unit(UnitIn),
}

impl EventIn {
    pub fn build(&self) -> Event {
        match self {
            EventIn::Signal(pid) => Event::Signal {
                pid: u32::from(*pid),
                signal: "SIGTERM",
            },
            EventIn::Resumed(pid) => Event::Resumed {
                pid: u32::from(*pid),
            },
            EventIn::Skipped(pid, sig, why) => Event::Skipped {
                pid: u32::from(*pid),
                signal: sig.then_some("SIGKILL"),
                why: match why % 5 {
                    0 => Skip::Exited,
                    1 => Skip::PidReused,
                    2 => Skip::ReleasedSocket,
                    3 => Skip::IdentityUnknown,
                    _ => Skip::ExitedBeforeSignal,
                },
            },
            EventIn::Exited(pid) => Event::Exited {
                pid: u32::from(*pid),
            },
            EventIn::Free => Event::Free,
            EventIn::Settle(ms) => Event::Settle { ms: *ms },
            EventIn::Retaken => Event::Retaken,
            EventIn::Timeout => Event::Timeout,
            EventIn::Health(passed, p, f) => Event::Health {
                passed: *passed,
                result: match p {
                    Some(p) => HealthResult::Passed(p.build()),
                    None => HealthResult::Failed(f.build()),
                },
            },
            EventIn::Fallback(k) => Event::Fallback {
                to: match k % 4 {
                    0 => ActionKind::Terminate,
                    1 => ActionKind::Wait,
                    2 => ActionKind::Refuse,
                    _ => ActionKind::Reuse,
                },
            },
            EventIn::Rediscover(round) => Event::Rediscover {
                round: usize::from(*round),
            },
            EventIn::Interrupted => Event::Interrupted,
            EventIn::Locked(ms) => Event::Locked { waited_ms: *ms },
            EventIn::Error(pid, e) => Event::Error {
                pid: u32::from(*pid),
                signal: "SIGKILL",
                error: e.clone(),
            },
            EventIn::StopContainer(id, name) => Event::StopContainer {
                id: lossy(id),
                name: name.string(CONTAINER_NAMES),
            },
            EventIn::ContainerStopped(id) => Event::ContainerStopped { id: lossy(id) },
            EventIn::Unit(u) => Event::Unit { unit: unit_of(u) },
        }
    }
}

#[derive(Arbitrary, Debug)]
pub struct Input {
    pub name: Option<u8>,
    pub default_action: Option<DefaultIn>,
    pub default_grace: Option<Dur>,
    pub default_timeout: Option<Dur>,
    pub default_settle: Option<Dur>,
    pub rules: Vec<RuleIn>,
    pub owners: Vec<OwnerIn>,
    pub port: u16,
    pub udp: bool,
    pub self_user: Option<SelfIn>,
    /// Leave `self` out of a case whose policy uses `"$self"` (a load error).
    pub omit_self: bool,
    pub expect_rule: Option<u8>,
    pub test_clients: Option<TestClientsIn>,
    pub protected: Vec<(u8, u8)>,
    /// `Some`: user names are matched by uid through this table, as a real
    /// run does; `None`: compared as data, as `portguard test` does.
    pub uids: Option<Vec<(u8, Option<u8>)>>,
    /// What each of the policy's client directories showed, in order.
    pub clients: Vec<SeenIn>,
    pub probe: Option<ProbeIn>,
    /// Sockets in TIME_WAIT (no process owns them) and connections.
    pub time_wait: u8,
    pub connections: u8,
    pub end: EndIn,
    pub steps: Vec<(u32, EventIn)>,
    pub lingering: u8,
}

pub fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
