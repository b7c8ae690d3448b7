//! The shape of a policy file: the keys of each table, which of them are
//! required and what type each value has. The structural check
//! ([`super::structure`]) walks a parsed file against it, so that every
//! unknown key, missing key and wrong type is reported in one go, before
//! serde reads the file into [`crate::policy::raw`] (which would stop at
//! the first). A test holds this description equal to the JSON Schema of
//! those raw types, so the two cannot drift apart.

/// What a value must be.
#[derive(Clone, Copy)]
pub(super) enum Kind {
    /// A string.
    Str,
    /// A string holding a duration (`"10s"`).
    Duration,
    /// `true` or `false`.
    Bool,
    /// An integer (64-bit).
    Int,
    /// An integer from 0 to 4294967295 (pids, uids).
    U32,
    /// A table.
    Table(&'static Table),
    /// An array of tables (`[[rule]]`).
    Tables(&'static Table),
    /// An array of strings.
    Strs,
    /// An array of integers from 0 to 4294967295.
    U32s,
    /// An array whose items the loader checks one by one (`ports`).
    List,
    /// Any value: the loader checks it (`match.user`, `escalate`).
    Any,
}

impl Kind {
    /// What the kind is, after "expected".
    pub(super) fn expected(self) -> &'static str {
        match self {
            Kind::Str => "a string",
            Kind::Duration => "a duration string",
            Kind::Bool => "true or false",
            Kind::Int => "an integer",
            Kind::U32 => "a number from 0 to 4294967295",
            Kind::Table(_) => "a table",
            Kind::Tables(_) => "an array of tables",
            Kind::Strs => "an array of strings",
            Kind::U32s => "an array of numbers",
            Kind::List => "an array",
            Kind::Any => "a value",
        }
    }
}

/// One key of a table.
pub(super) struct Field {
    /// The key.
    pub key: &'static str,
    /// Its value.
    pub kind: Kind,
    /// Whether the table is incomplete without it.
    pub required: bool,
    /// A correct line, for help: `timeout = "10s"`.
    pub example: &'static str,
}

/// A table of the policy format.
pub(super) struct Table {
    /// Its name in the JSON Schema (`Rule`), for the test against it.
    #[cfg_attr(not(test), allow(dead_code))]
    pub schema_name: &'static str,
    /// Where a key is, in messages: "unknown key `x` in [[rule]]".
    pub place: &'static str,
    /// What one such table is called: "rule", "test case".
    pub noun: &'static str,
    /// Its keys.
    pub fields: &'static [Field],
    /// Tables whose keys are often written in this one by mistake, with
    /// the help to give (`{key}` is replaced by the key).
    pub elsewhere: &'static [(&'static Table, &'static str)],
}

impl Table {
    /// The field of `key`.
    pub(super) fn field(&self, key: &str) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.key == key)
    }

    /// The keys, in the order of the file format's documentation.
    pub(super) fn keys(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.fields.iter().map(|f| f.key)
    }
}

const fn opt(key: &'static str, kind: Kind, example: &'static str) -> Field {
    Field {
        key,
        kind,
        required: false,
        example,
    }
}

const fn req(key: &'static str, kind: Kind, example: &'static str) -> Field {
    Field {
        key,
        kind,
        required: true,
        example,
    }
}

/// The whole file.
pub(super) static POLICY: Table = Table {
    schema_name: "Policy",
    place: "the policy",
    noun: "policy",
    fields: &[
        opt("name", Kind::Str, "name = \"my-policy\""),
        opt(
            "description",
            Kind::Str,
            "description = \"what the policy is for\"",
        ),
        opt("defaults", Kind::Table(&DEFAULTS), "[defaults]"),
        opt("rule", Kind::Tables(&RULE), "[[rule]]"),
        opt("test", Kind::Tables(&TEST), "[[test]]"),
    ],
    elsewhere: &[
        (&DEFAULTS, "`{key}` belongs in [defaults]"),
        (
            &RULE,
            "`{key}` is a key of a rule: write it below a [[rule]] header",
        ),
        (
            &TEST,
            "`{key}` is a key of a test case: write it below a [[test]] header",
        ),
    ],
};

/// `[defaults]`.
pub(super) static DEFAULTS: Table = Table {
    schema_name: "Defaults",
    place: "[defaults]",
    noun: "[defaults]",
    fields: &[
        opt("action", Kind::Str, "action = \"refuse\""),
        opt("grace", Kind::Duration, "grace = \"3s\""),
        opt("timeout", Kind::Duration, "timeout = \"10s\""),
        opt("settle", Kind::Duration, "settle = \"250ms\""),
    ],
    elsewhere: &[(
        &RULE,
        "`{key}` is a setting of a rule, not of [defaults]; [defaults] has action, grace, timeout and settle",
    )],
};

/// `[[rule]]`.
pub(super) static RULE: Table = Table {
    schema_name: "Rule",
    place: "[[rule]]",
    noun: "rule",
    fields: &[
        req("name", Kind::Str, "name = \"my-server\""),
        opt(
            "description",
            Kind::Str,
            "description = \"why the rule exists\"",
        ),
        opt("ports", Kind::List, "ports = [8080, \"9000-9010\"]"),
        opt("match", Kind::Table(&MATCH), "match.cmdline = '^node '"),
        req("action", Kind::Str, "action = \"refuse\""),
        opt("signal", Kind::Str, "signal = \"SIGTERM\""),
        opt("grace", Kind::Duration, "grace = \"3s\""),
        opt("escalate", Kind::Any, "escalate = \"SIGKILL\""),
        opt("timeout", Kind::Duration, "timeout = \"10s\""),
        opt("then", Kind::Str, "then = \"terminate\""),
        opt(
            "message",
            Kind::Str,
            "message = \"port {port} is held by {cmdline}\"",
        ),
        opt(
            "health",
            Kind::Str,
            "health = \"http://127.0.0.1:{port}/health\"",
        ),
        opt("health_body", Kind::Str, "health_body = 'ok'"),
        opt("health_status", Kind::List, "health_status = [200, 503]"),
        opt("health_any_host", Kind::Bool, "health_any_host = true"),
    ],
    elsewhere: &[(&MATCH, "`{key}` is a criterion: write `match.{key}`")],
};

/// A rule's `match`.
pub(super) static MATCH: Table = Table {
    schema_name: "Match",
    place: "`match`",
    noun: "`match`",
    fields: &[
        opt("cmdline", Kind::Str, "match.cmdline = '^node '"),
        opt("exe", Kind::Str, "match.exe = '^/usr/bin/node$'"),
        opt("user", Kind::Any, "match.user = \"$self\""),
        opt("orphan", Kind::Bool, "match.orphan = true"),
        opt(
            "clients",
            Kind::Table(&CLIENTS),
            "match.clients = { dir = \"~/.cache/app/clients\", live = false }",
        ),
        opt("unit", Kind::Str, "match.unit = '^app\\.service$'"),
        opt("container", Kind::Str, "match.container = '^db$'"),
        opt("image", Kind::Str, "match.image = '^postgres:'"),
    ],
    elsewhere: &[(
        &RULE,
        "`{key}` belongs to the rule itself, not to its `match`",
    )],
};

/// `match.clients`.
pub(super) static CLIENTS: Table = Table {
    schema_name: "Clients",
    place: "`match.clients`",
    noun: "`match.clients`",
    fields: &[
        req("dir", Kind::Str, "dir = \"~/.cache/app/clients\""),
        req("live", Kind::Bool, "live = false"),
    ],
    elsewhere: &[],
};

/// `[[test]]`.
pub(super) static TEST: Table = Table {
    schema_name: "Test",
    place: "[[test]]",
    noun: "test case",
    fields: &[
        req("name", Kind::Str, "name = \"a stale server is terminated\""),
        req("port", Kind::Int, "port = 8080"),
        opt("protocol", Kind::Str, "protocol = \"tcp\""),
        opt("self", Kind::Any, "self = \"alice\""),
        req(
            "expect",
            Kind::Table(&EXPECT),
            "expect = { rule = \"my-server\", action = \"terminate\" }",
        ),
        opt(
            "owners",
            Kind::Tables(&OWNER),
            "owners = [{ pid = 4242, ppid = 1, uid = 1000, cmdline = [\"node\", \"server.js\"] }]",
        ),
        opt(
            "clients",
            Kind::Table(&TEST_CLIENTS),
            "clients = { live = [4243] }",
        ),
        opt("healthy", Kind::Bool, "healthy = false"),
    ],
    elsewhere: &[
        (&EXPECT, "`{key}` is an expectation: write `expect.{key}`"),
        (
            &OWNER,
            "`{key}` describes an owner: write it in `owners = [{ {key} = ... }]`",
        ),
    ],
};

/// A test case's `expect`.
pub(super) static EXPECT: Table = Table {
    schema_name: "Expect",
    place: "`expect`",
    noun: "`expect`",
    fields: &[
        opt("rule", Kind::Str, "expect.rule = \"my-server\""),
        opt("action", Kind::Str, "expect.action = \"refuse\""),
        opt("outcome", Kind::Str, "expect.outcome = \"refused\""),
    ],
    elsewhere: &[],
};

/// One of a test case's `owners`.
pub(super) static OWNER: Table = Table {
    schema_name: "Owner",
    place: "a test owner",
    noun: "owner",
    fields: &[
        opt("pid", Kind::U32, "pid = 4242"),
        opt("ppid", Kind::U32, "ppid = 1"),
        opt("user", Kind::Str, "user = \"alice\""),
        opt("uid", Kind::U32, "uid = 1000"),
        opt("exe", Kind::Str, "exe = \"/usr/bin/node\""),
        opt("cmdline", Kind::Strs, "cmdline = [\"node\", \"server.js\"]"),
        opt("orphan", Kind::Bool, "orphan = true"),
        opt("addr", Kind::Str, "addr = \"127.0.0.1:8080\""),
        opt("unit", Kind::Str, "unit = \"app.service\""),
        opt("unit_user", Kind::U32, "unit_user = 1000"),
        opt(
            "container",
            Kind::Table(&CONTAINER),
            "container = { name = \"db\", image = \"postgres:16\" }",
        ),
    ],
    elsewhere: &[],
};

/// An owner's `container`.
pub(super) static CONTAINER: Table = Table {
    schema_name: "TestContainer",
    place: "an owner's `container`",
    noun: "`container`",
    fields: &[
        req("name", Kind::Str, "name = \"db\""),
        req("image", Kind::Str, "image = \"postgres:16\""),
        opt("id", Kind::Str, "id = \"0123456789ab\""),
    ],
    elsewhere: &[],
};

/// A test case's `clients`.
pub(super) static TEST_CLIENTS: Table = Table {
    schema_name: "TestClients",
    place: "a test's `clients`",
    noun: "`clients`",
    fields: &[
        opt("live", Kind::U32s, "live = [4243]"),
        opt("stale", Kind::U32s, "stale = [4244]"),
        opt("unreadable", Kind::Bool, "unreadable = true"),
    ],
    elsewhere: &[],
};

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::collections::BTreeSet;

    /// The kind a JSON Schema property describes, in the words of
    /// [`Kind`]: the same for both when they agree.
    fn schema_kind(p: &Value) -> String {
        let reference = |v: &Value| -> Option<String> {
            v.get("$ref")
                .and_then(Value::as_str)
                .map(|r| r.trim_start_matches("#/$defs/").to_string())
        };
        if let Some(r) = reference(p) {
            return format!("table {r}");
        }
        if let Some(any) = p.get("anyOf").and_then(Value::as_array) {
            // `Option<Table>`: the table or null.
            let tables: Vec<String> = any.iter().filter_map(reference).collect();
            if let [r] = tables.as_slice() {
                return format!("table {r}");
            }
            return "any".into();
        }
        let types: Vec<&str> = match p.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let main = types.iter().find(|t| **t != "null").copied().unwrap_or("?");
        match main {
            "array" => {
                let items = &p["items"];
                if let Some(r) = reference(items) {
                    format!("tables {r}")
                } else {
                    format!("array of {}", schema_kind(items))
                }
            }
            "integer" if p.get("format").and_then(Value::as_str) == Some("uint32") => "u32".into(),
            other => other.to_string(),
        }
    }

    fn kind_words(k: Kind) -> String {
        match k {
            Kind::Str | Kind::Duration => "string".into(),
            Kind::Bool => "boolean".into(),
            Kind::Int => "integer".into(),
            Kind::U32 => "u32".into(),
            Kind::Table(t) => format!("table {}", t.schema_name),
            Kind::Tables(t) => format!("tables {}", t.schema_name),
            Kind::Strs => "array of string".into(),
            Kind::U32s => "array of u32".into(),
            Kind::List => "array of any".into(),
            Kind::Any => "any".into(),
        }
    }

    fn every_table() -> Vec<&'static Table> {
        vec![
            &POLICY,
            &DEFAULTS,
            &RULE,
            &MATCH,
            &CLIENTS,
            &TEST,
            &EXPECT,
            &OWNER,
            &CONTAINER,
            &TEST_CLIENTS,
        ]
    }

    #[test]
    fn the_shape_is_the_json_schema_of_the_raw_types() {
        let schema = schemars::schema_for!(crate::policy::raw::RawPolicy).to_value();
        let defs = schema["$defs"].as_object().unwrap();
        let tables = every_table();
        // Every table of the schema is described, and nothing else.
        let described: BTreeSet<&str> = tables
            .iter()
            .map(|t| t.schema_name)
            .filter(|n| *n != "Policy")
            .collect();
        let in_schema: BTreeSet<&str> = defs.keys().map(String::as_str).collect();
        assert_eq!(described, in_schema);
        for table in tables {
            let object = if table.schema_name == "Policy" {
                &schema
            } else {
                &defs[table.schema_name]
            };
            let properties = object["properties"].as_object().unwrap();
            let keys: BTreeSet<&str> = table.keys().collect();
            let schema_keys: BTreeSet<&str> = properties.keys().map(String::as_str).collect();
            assert_eq!(keys, schema_keys, "keys of {}", table.schema_name);
            let required: BTreeSet<&str> = table
                .fields
                .iter()
                .filter(|f| f.required)
                .map(|f| f.key)
                .collect();
            let schema_required: BTreeSet<&str> = object
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            assert_eq!(
                required, schema_required,
                "required in {}",
                table.schema_name
            );
            for field in table.fields {
                assert_eq!(
                    kind_words(field.kind),
                    schema_kind(&properties[field.key]),
                    "type of {}.{}",
                    table.schema_name,
                    field.key
                );
            }
        }
    }

    #[test]
    fn every_example_is_a_line_of_that_key() {
        for table in every_table() {
            for f in table.fields {
                let e = f.example;
                assert!(
                    e.starts_with(&format!("{} = ", f.key))
                        || e.starts_with(&format!("{}.", f.key))
                        || e.starts_with(&format!("match.{} = ", f.key))
                        || e.starts_with(&format!("expect.{} = ", f.key))
                        || e.starts_with(&format!("[{}]", f.key))
                        || e.starts_with(&format!("[[{}]]", f.key)),
                    "{}: {e}",
                    f.key
                );
            }
        }
    }
}
