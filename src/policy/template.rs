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
}
