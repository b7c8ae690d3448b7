//! `message` templates (`"port {port} is held by {exe}"`), parsed once when
//! the policy loads: `check` warns about the placeholders it does not know,
//! and the report fills in the known ones without parsing the text again.

use std::fmt;

/// A placeholder a `message` template may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholder {
    /// `{port}`: the port being resolved.
    Port,
    /// `{pid}`: the first holder's pid.
    Pid,
    /// `{user}`: its user name (or `uid N`).
    User,
    /// `{uid}`: its uid.
    Uid,
    /// `{exe}`: its executable.
    Exe,
    /// `{cmdline}`: its argv joined by spaces.
    Cmdline,
    /// `{rule}`: the rule that applied (`default` when none did).
    Rule,
    /// `{container}`: the container behind a `docker-proxy` holder.
    Container,
    /// `{image}`: that container's image.
    Image,
    /// `{unit}`: the holder's systemd unit.
    Unit,
}

impl Placeholder {
    /// Every placeholder, in the order the documentation lists them.
    pub const ALL: [Placeholder; 10] = [
        Placeholder::Port,
        Placeholder::Pid,
        Placeholder::User,
        Placeholder::Uid,
        Placeholder::Exe,
        Placeholder::Cmdline,
        Placeholder::Rule,
        Placeholder::Container,
        Placeholder::Image,
        Placeholder::Unit,
    ];

    /// The name between the braces.
    pub fn name(self) -> &'static str {
        match self {
            Placeholder::Port => "port",
            Placeholder::Pid => "pid",
            Placeholder::User => "user",
            Placeholder::Uid => "uid",
            Placeholder::Exe => "exe",
            Placeholder::Cmdline => "cmdline",
            Placeholder::Rule => "rule",
            Placeholder::Container => "container",
            Placeholder::Image => "image",
            Placeholder::Unit => "unit",
        }
    }

    fn parse(name: &str) -> Option<Placeholder> {
        Placeholder::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(Placeholder),
}

/// A parsed `message` template. A `{name}` that is not a placeholder stays
/// as written (and `check` warns about it), as does a lone `{`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
    unknown: Vec<String>,
}

impl Template {
    /// Parses `source`.
    pub fn parse(source: &str) -> Template {
        let mut parts = Vec::new();
        let mut unknown = Vec::new();
        let mut text = String::new();
        let mut rest = source;
        while let Some(open) = rest.find('{') {
            text.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let field = after.find('}').map(|close| (close, &after[..close]));
            match field.and_then(|(close, name)| Some((close, Placeholder::parse(name)?))) {
                Some((close, p)) => {
                    if !text.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut text)));
                    }
                    parts.push(Part::Field(p));
                    rest = &after[close + 1..];
                }
                None => {
                    if let Some((_, name)) = field {
                        if !unknown.iter().any(|u| u == name) {
                            unknown.push(name.to_string());
                        }
                    }
                    text.push('{');
                    rest = after;
                }
            }
        }
        text.push_str(rest);
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Template {
            source: source.to_string(),
            parts,
            unknown,
        }
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// `{names}` that are not placeholders, each once, in order.
    pub fn unknown(&self) -> &[String] {
        &self.unknown
    }

    /// The text with every placeholder replaced by `value(placeholder)`.
    pub fn fill(&self, mut value: impl FnMut(Placeholder) -> String) -> String {
        let mut out = String::with_capacity(self.source.len() + 32);
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Field(p) => out.push_str(&value(*p)),
            }
        }
        out
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// One piece of a directory template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DirPart {
    Text(String),
    /// `{port}`.
    Port,
    /// A leading `~`: `$HOME`.
    Home,
    /// `$NAME`, `${NAME}` or `${NAME:-default}`.
    Var {
        name: String,
        default: Option<String>,
    },
}

/// A directory template (`match.clients.dir`): `{port}`, a leading `~`
/// (`$HOME`) and `${VAR:-default}` are filled in from portguard's own
/// environment, which is the caller's, so a policy can follow a tool's own
/// configuration variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirTemplate {
    source: String,
    parts: Vec<DirPart>,
}

impl DirTemplate {
    /// Parses `source`; the error says what is wrong.
    pub fn parse(source: &str) -> Result<DirTemplate, String> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut rest = source;
        if let Some(after) = rest.strip_prefix('~') {
            if after.is_empty() || after.starts_with('/') {
                parts.push(DirPart::Home);
                rest = after;
            }
        }
        let flush = |text: &mut String, parts: &mut Vec<DirPart>| {
            if !text.is_empty() {
                parts.push(DirPart::Text(std::mem::take(text)));
            }
        };
        while let Some(c) = rest.chars().next() {
            if let Some(after) = rest.strip_prefix("{port}") {
                flush(&mut text, &mut parts);
                parts.push(DirPart::Port);
                rest = after;
            } else if let Some(after) = rest.strip_prefix("${") {
                let close = after
                    .find('}')
                    .ok_or_else(|| "`${` without its closing `}`".to_string())?;
                let inner = &after[..close];
                let (name, default) = match inner.split_once(":-") {
                    Some((n, d)) => (n, Some(d.to_string())),
                    None => (inner, None),
                };
                if !is_var_name(name) {
                    return Err(format!("`{name}` is not an environment variable name"));
                }
                flush(&mut text, &mut parts);
                parts.push(DirPart::Var {
                    name: name.to_string(),
                    default,
                });
                rest = &after[close + 1..];
            } else if let Some(after) = rest.strip_prefix('$') {
                let len = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                if len == 0 || !is_var_name(&after[..len]) {
                    return Err("`$` must start a variable: $NAME or ${NAME:-default}".into());
                }
                flush(&mut text, &mut parts);
                parts.push(DirPart::Var {
                    name: after[..len].to_string(),
                    default: None,
                });
                rest = &after[len..];
            } else {
                text.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
        flush(&mut text, &mut parts);
        Ok(DirTemplate {
            source: source.to_string(),
            parts,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The directory for `port`, with variables from `env`; an unset
    /// variable without a default expands to nothing (as in a shell), and
    /// `~` without `HOME` is an error.
    pub fn expand(
        &self,
        port: u16,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                DirPart::Text(t) => out.push_str(t),
                DirPart::Port => out.push_str(&port.to_string()),
                DirPart::Home => match env("HOME").filter(|h| !h.is_empty()) {
                    Some(home) => out.push_str(&home),
                    None => return Err("`~` needs $HOME, which is not set".into()),
                },
                DirPart::Var { name, default } => {
                    match (env(name).filter(|v| !v.is_empty()), default) {
                        (Some(v), _) => out.push_str(&v),
                        (None, Some(d)) => out.push_str(&expand_home(d, env)?),
                        (None, None) => {}
                    }
                }
            }
        }
        Ok(out)
    }
}

/// A default value's own leading `~`, as a shell would expand it.
fn expand_home(value: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    match value.strip_prefix('~') {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => {
            match env("HOME").filter(|h| !h.is_empty()) {
                Some(home) => Ok(format!("{home}{rest}")),
                None => Err("`~` needs $HOME, which is not set".into()),
            }
        }
        _ => Ok(value.to_string()),
    }
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl fmt::Display for DirTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(t: &str) -> String {
        Template::parse(t).fill(|p| p.name().to_uppercase())
    }

    #[test]
    fn known_placeholders_are_filled_and_the_rest_kept() {
        assert_eq!(
            fill("{port} {pid} {user} {uid} {exe} {cmdline} {rule} {nope} {"),
            "PORT PID USER UID EXE CMDLINE RULE {nope} {"
        );
        assert_eq!(fill("{{port}}"), "{PORT}");
        assert_eq!(fill("no fields"), "no fields");
        assert_eq!(fill(""), "");
        assert_eq!(fill("{container} {image} {unit}"), "CONTAINER IMAGE UNIT");
    }

    #[test]
    fn unknown_names_are_listed_once() {
        let t = Template::parse("{holder} {port} {holder} {x");
        assert_eq!(t.unknown(), ["holder"]);
        assert_eq!(t.as_str(), "{holder} {port} {holder} {x");
    }

    fn env(name: &str) -> Option<String> {
        match name {
            "HOME" => Some("/home/alice".into()),
            "WS" => Some("/srv/ws".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn directory_templates_expand_port_home_and_variables() {
        let t =
            DirTemplate::parse("${HEADROOM_WORKSPACE_DIR:-~/.headroom}/clients/{port}").unwrap();
        assert_eq!(
            t.expand(8787, &env).unwrap(),
            "/home/alice/.headroom/clients/8787"
        );
        let t = DirTemplate::parse("${WS:-~/.headroom}/clients/{port}").unwrap();
        assert_eq!(t.expand(1, &env).unwrap(), "/srv/ws/clients/1");
        let t = DirTemplate::parse("~/x/$WS/${EMPTY:-d}/${NOPE}").unwrap();
        assert_eq!(t.expand(1, &env).unwrap(), "/home/alice/x//srv/ws/d/");
        let t = DirTemplate::parse("/a~b/{port}{port}").unwrap();
        assert_eq!(t.expand(7, &env).unwrap(), "/a~b/77");
        let no_home = |_: &str| None;
        assert!(DirTemplate::parse("~/x")
            .unwrap()
            .expand(1, &no_home)
            .is_err());
    }

    #[test]
    fn bad_directory_templates_say_why() {
        for bad in ["${HOME", "${1X}", "/x/$", "/x/$-", "${A B}"] {
            assert!(DirTemplate::parse(bad).is_err(), "{bad}");
        }
    }
}
