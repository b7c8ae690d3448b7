//! The policy file exactly as written: what serde reads from TOML, with the
//! source span of every value a later check may need to point at.
//!
//! Nothing here is interpreted; `policy::load` turns these into the checked
//! model and reports every problem with its place in the file. Before serde
//! reads a file, the loader's structural check walks it against a
//! description of these types (held equal to their JSON Schema by a test)
//! and reports every unknown key, missing key and wrong type at once;
//! `deny_unknown_fields` stays as the last word, so a typo such as `acton`
//! can never silently fall back to a default.

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::Deserialize;
use toml::Spanned;

/// A whole policy file.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Policy")]
pub struct RawPolicy {
    /// Name of the policy, shown in traces and JSON output (default: the file name).
    #[schemars(with = "Option<String>")]
    pub name: Option<Spanned<String>>,
    /// What the policy is for.
    pub description: Option<String>,
    /// Settings used when a rule does not give its own, and the action when no rule applies.
    pub defaults: Option<RawDefaults>,
    /// Rules, tried in file order; the first rule whose criteria hold for every holder's process-tree root applies.
    #[serde(default)]
    #[schemars(with = "Vec<RawRule>")]
    pub rule: Vec<Spanned<RawRule>>,
    /// Policy unit tests, run by `portguard test`: owners as data and the decision they must produce.
    #[serde(default)]
    #[schemars(with = "Vec<RawTest>")]
    pub test: Vec<Spanned<RawTest>>,
}

/// Defaults for every rule, and the action when no rule applies.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Defaults")]
pub struct RawDefaults {
    /// Action when no rule applies: refuse (default), wait or reuse. Never
    /// terminate: portguard does not signal a process that no rule matched.
    #[serde(default)]
    #[schemars(schema_with = "default_action_schema")]
    pub action: Option<Spanned<String>>,
    /// terminate: time from the first signal to escalation (default "3s"). A humantime duration.
    #[schemars(with = "Option<String>")]
    pub grace: Option<Spanned<String>>,
    /// wait, reuse, and terminate overall: give up after this (default "10s"). A humantime duration.
    #[schemars(with = "Option<String>")]
    pub timeout: Option<Spanned<String>>,
    /// terminate: after freeing a port whose holder still had a live parent
    /// (a possible supervisor), watch it this long for a restarted server
    /// before reporting it freed (default "250ms"; "0s" turns it off).
    #[schemars(with = "Option<String>")]
    pub settle: Option<Spanned<String>>,
}

/// A rule: which holders it matches and what to do with them.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Rule")]
pub struct RawRule {
    /// Name, unique in the file; shown in traces and JSON.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// Why the rule exists.
    pub description: Option<String>,
    /// Ports the rule is limited to: numbers and `"a-b"` ranges.
    #[serde(default)]
    #[schemars(schema_with = "ports_schema")]
    pub ports: Option<Spanned<Vec<Spanned<toml::Value>>>>,
    /// Criteria every process-tree root holding the port must satisfy; absent: applies to every owner.
    #[serde(rename = "match")]
    pub matcher: Option<RawMatch>,
    /// `terminate`, `wait`, `refuse` or `reuse`.
    #[schemars(schema_with = "action_schema")]
    pub action: Spanned<String>,
    /// terminate: the first signal (default "SIGTERM"): SIGTERM, SIGKILL, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGABRT or SIGALRM.
    #[schemars(with = "Option<String>")]
    pub signal: Option<Spanned<String>>,
    /// terminate: time from the first signal to escalation (default: [defaults].grace).
    #[schemars(with = "Option<String>")]
    pub grace: Option<Spanned<String>>,
    /// terminate: escalation signal, or `false`.
    #[serde(default)]
    #[schemars(schema_with = "escalate_schema")]
    pub escalate: Option<Spanned<toml::Value>>,
    /// terminate, wait, reuse: give up after this (default: [defaults].timeout).
    #[schemars(with = "Option<String>")]
    pub timeout: Option<Spanned<String>>,
    /// wait, reuse: action to fall back to.
    #[serde(default)]
    #[schemars(schema_with = "action_schema")]
    pub then: Option<Spanned<String>>,
    /// refuse: message template with {port} {pid} {user} {uid} {exe} {cmdline} {rule} {container} {image} {unit}.
    #[schemars(with = "Option<String>")]
    pub message: Option<Spanned<String>>,
    /// reuse: check that the holder answers before reusing it: "tcp" (it accepts a connection) or an http:// URL template with {port} (a 2xx answer within `timeout`). Loopback hosts only, unless `health_any_host = true`.
    #[schemars(with = "Option<String>")]
    pub health: Option<Spanned<String>>,
    /// reuse: regex the health response body must contain (http health checks).
    #[schemars(with = "Option<String>")]
    pub health_body: Option<Spanned<String>>,
    /// reuse: HTTP status codes that count as an answer of an http health check: codes and "a-b" ranges (default ["200-299"]). A server that reports trouble with a 503 but is alive can be accepted with [200, 503].
    #[serde(default)]
    #[schemars(schema_with = "status_schema")]
    pub health_status: Option<Spanned<Vec<Spanned<toml::Value>>>>,
    /// reuse: allow an http health URL whose host is not loopback.
    #[schemars(with = "Option<bool>")]
    pub health_any_host: Option<Spanned<bool>>,
}

/// Match criteria: every given criterion must hold; an absent one matches anything.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Match")]
pub struct RawMatch {
    /// Regex (Rust regex syntax) searched in the owner's argv joined by single spaces.
    #[schemars(with = "Option<String>")]
    pub cmdline: Option<Spanned<String>>,
    /// Regex searched in the absolute path of the owner's executable (anchor with ^...$).
    #[schemars(with = "Option<String>")]
    pub exe: Option<Spanned<String>>,
    /// User name, uid, `"$self"` or a list of them.
    #[serde(default)]
    #[schemars(schema_with = "user_schema")]
    pub user: Option<Spanned<toml::Value>>,
    /// Whether the owner's parent has exited (its parent is pid 1 or a subreaper), i.e. it is stale.
    #[schemars(with = "Option<bool>")]
    pub orphan: Option<Spanned<bool>>,
    /// Whether the server has live clients, recorded as one file per client (named `<pid>` or `<pid>.<ext>`) in a directory.
    pub clients: Option<RawClients>,
    /// Regex searched in the systemd unit the owner runs in (`nginx.service`, `session-3.scope`), from its cgroup.
    #[schemars(with = "Option<String>")]
    pub unit: Option<Spanned<String>>,
    /// Regex searched in the name of the Docker container behind a `docker-proxy` owner.
    #[schemars(with = "Option<String>")]
    pub container: Option<Spanned<String>>,
    /// Regex searched in the image reference of the Docker container behind a `docker-proxy` owner (`postgres:16`).
    #[schemars(with = "Option<String>")]
    pub image: Option<Spanned<String>>,
}

/// `match.clients`: live clients recorded as files in a directory.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Clients")]
pub struct RawClients {
    /// The directory: `{port}`, a leading `~` ($HOME) and `${VAR:-default}` are expanded from portguard's environment. A missing directory means no clients; an unreadable one is unknown and satisfies neither `live = true` nor `live = false`.
    #[schemars(with = "String")]
    pub dir: Spanned<String>,
    /// `true`: holds when a recorded client is alive (not a zombie, the same process when the record has a start time, not portguard or its ancestors). `false`: holds when none is.
    #[schemars(with = "bool")]
    pub live: Spanned<bool>,
}

/// A policy test case.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Test")]
pub struct RawTest {
    /// Name shown by `portguard test`.
    pub name: String,
    /// Port being resolved.
    #[schemars(with = "u16", range(min = 1, max = 65535))]
    pub port: Spanned<i64>,
    /// `tcp` (default) or `udp`.
    #[schemars(with = "Option<String>")]
    pub protocol: Option<Spanned<String>>,
    /// Who runs portguard: a user name or uid (for `"$self"`).
    #[serde(rename = "self")]
    #[serde(default)]
    #[schemars(schema_with = "self_schema")]
    pub self_user: Option<Spanned<toml::Value>>,
    /// The expected decision.
    pub expect: RawExpect,
    /// Holders of the port, one table per process; none: the port is free.
    #[serde(default)]
    pub owners: Vec<RawOwner>,
    /// What every `match.clients` directory shows in this case (default: no clients).
    pub clients: Option<RawTestClients>,
    /// Whether the holders answer a `reuse` rule's health check (default true); `false` plans the rule's `then` (or a failure without one).
    pub healthy: Option<bool>,
}

/// The client records a test case's rules see.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "TestClients")]
pub struct RawTestClients {
    /// Pids of live clients.
    #[serde(default)]
    pub live: Vec<u32>,
    /// Pids of stale records (the client exited).
    #[serde(default)]
    pub stale: Vec<u32>,
    /// The directory cannot be read (whether there are clients is unknown).
    #[serde(default)]
    pub unreadable: bool,
}

/// The decision the case expects; absent fields are not checked.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Expect")]
pub struct RawExpect {
    /// Name of the rule that must apply; "default" when no rule may apply.
    pub rule: Option<String>,
    /// Action that must be chosen: terminate, wait, refuse or reuse.
    pub action: Option<String>,
    /// Planned outcome: free, freed, reuse, refused or failed.
    pub outcome: Option<String>,
}

/// One holder of the port in a test case.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Owner")]
pub struct RawOwner {
    /// Process id (absent: an owner whose process cannot be seen).
    pub pid: Option<u32>,
    /// Parent pid; an owner whose parent is another owner is its worker.
    pub ppid: Option<u32>,
    /// User name.
    pub user: Option<String>,
    /// uid.
    pub uid: Option<u32>,
    /// Executable path.
    pub exe: Option<String>,
    /// argv.
    pub cmdline: Option<Vec<String>>,
    /// Whether the parent has exited (default: ppid is 0 or 1).
    pub orphan: Option<bool>,
    /// Local address, ip:port (default 127.0.0.1:PORT).
    pub addr: Option<String>,
    /// The systemd unit it runs in (`nginx.service`); a user unit's owner is given with `unit_user`.
    pub unit: Option<String>,
    /// For a user unit: the uid whose user manager runs it.
    pub unit_user: Option<u32>,
    /// The container behind a `docker-proxy` owner.
    pub container: Option<RawContainer>,
}

/// A container in a test case.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "TestContainer")]
pub struct RawContainer {
    /// Container name.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// Container id (default: derived from the name).
    pub id: Option<String>,
}

fn action_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "What to do when the rule applies.",
        "type": "string",
        "enum": ["terminate", "wait", "refuse", "reuse"]
    })
}

fn ports_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "Ports the rule is limited to: numbers and \"a-b\" ranges. Default: every port.",
        "type": "array",
        "minItems": 1,
        "items": {
            "anyOf": [
                { "type": "integer", "minimum": 1, "maximum": 65535 },
                { "type": "string", "pattern": "^[0-9]{1,5}(-[0-9]{1,5})?$" }
            ]
        }
    })
}

fn status_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "reuse: HTTP status codes an http health check accepts: codes 100-599 and \"a-b\" ranges (default [\"200-299\"]).",
        "type": "array",
        "minItems": 1,
        "items": {
            "anyOf": [
                { "type": "integer", "minimum": 100, "maximum": 599 },
                { "type": "string", "pattern": "^[0-9]{3}(-[0-9]{3})?$" }
            ]
        }
    })
}

fn escalate_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "terminate: the signal sent after `grace` (default SIGKILL), or false to never escalate.",
        "anyOf": [{ "type": "string" }, { "type": "boolean" }]
    })
}

fn one_user() -> serde_json::Value {
    serde_json::json!({ "anyOf": [
        { "type": "string", "minLength": 1 },
        { "type": "integer", "minimum": 0, "maximum": 4294967295u32 }
    ]})
}

fn user_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "The owner's uid is one of these: user names, uids, or \"$self\" (the user running portguard).",
        "anyOf": [
            one_user(),
            { "type": "array", "minItems": 1, "items": one_user() }
        ]
    })
}

fn self_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "Who runs portguard in this case (for \"$self\"): a user name or a uid.",
        "anyOf": [
            { "type": "string" },
            { "type": "integer", "minimum": 0 }
        ]
    })
}

fn default_action_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "Action when no rule applies (default \"refuse\"); never terminate.",
        "type": "string",
        "enum": ["wait", "refuse", "reuse"]
    })
}
