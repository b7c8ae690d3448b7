//! Built-in policies and the lookup order that picks a policy when the user
//! did not name one (docs/cli.md, "Which policy is used").

use super::load::{load_file, load_with};
use super::{Policy, PolicyError};
use std::path::{Path, PathBuf};

/// Built-in policies: name and TOML text, embedded from `rules/` so the
/// files users read and validate are exactly what the binary runs. Each
/// ends with its `[[test]]` cases after [`TESTS_MARKER`]; running the
/// policy loads only what comes before ([`rules_part`]).
pub const BUILTINS: [(&str, &str); 4] = [
    ("headroom", include_str!("../../rules/headroom.toml")),
    (
        "headroom-reuse",
        include_str!("../../rules/headroom-reuse.toml"),
    ),
    ("mine", include_str!("../../rules/mine.toml")),
    ("safe", include_str!("../../rules/safe.toml")),
];

/// The comment line that starts a built-in policy's `[[test]]` cases.
/// Everything after it is tests only (a unit test holds every built-in to
/// that), so `resolve`, `who` and `run` never parse them: they were a third
/// of the time a free-port `resolve` took. `portguard test rules/*.toml`
/// and the unit tests run them from the whole text.
pub const TESTS_MARKER: &str = "\n# --- policy tests";

/// A built-in policy's text without its `[[test]]` cases: a prefix of the
/// whole text, so every line and span in it is the same as in the file.
pub fn rules_part(text: &str) -> &str {
    text.find(TESTS_MARKER)
        .and_then(|at| text.get(..=at))
        .unwrap_or(text)
}

/// Where a policy comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// A built-in policy, by name.
    Builtin(&'static str),
    /// A file.
    File(PathBuf),
}

impl PolicySource {
    /// Name used in diagnostics: the path, or `<built-in NAME>`.
    pub fn display_name(&self) -> String {
        match self {
            PolicySource::Builtin(name) => format!("<built-in {name}>"),
            PolicySource::File(p) => p.display().to_string(),
        }
    }

    /// Name of a policy that does not set `name`: the built-in name or the
    /// file stem.
    pub fn default_name(&self) -> String {
        match self {
            PolicySource::Builtin(name) => name.to_string(),
            PolicySource::File(p) => p.file_stem().map_or_else(
                || "policy".to_string(),
                |s| s.to_string_lossy().into_owned(),
            ),
        }
    }

    /// `"built-in"` or the path, as JSON output reports it.
    pub fn describe(&self) -> String {
        match self {
            PolicySource::Builtin(_) => "built-in".to_string(),
            PolicySource::File(p) => p.display().to_string(),
        }
    }

    /// Reads and checks the policy; a built-in one without its `[[test]]`
    /// cases ([`rules_part`]), and with its regexes checked only when they
    /// are compiled.
    pub fn load(&self) -> Result<Policy, PolicyError> {
        match self {
            PolicySource::Builtin(name) => {
                let text = BUILTINS
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, t)| *t)
                    .ok_or_else(|| PolicyError::UnknownBuiltin(name.to_string()))?;
                // Their regexes pass `check` in the tests: not checked again.
                load_with(rules_part(text), self.clone(), false)
            }
            PolicySource::File(path) => load_file(path),
        }
    }
}

/// Interprets a `--policy` / `$PORTGUARD_POLICY` value: a path when it
/// contains `/` or ends in `.toml`, else the name of a built-in policy.
pub fn parse_policy_arg(value: &str) -> Result<PolicySource, PolicyError> {
    if value.contains('/') || value.ends_with(".toml") {
        return Ok(PolicySource::File(PathBuf::from(value)));
    }
    BUILTINS
        .iter()
        .find(|(n, _)| *n == value)
        .map(|(n, _)| PolicySource::Builtin(n))
        .ok_or_else(|| PolicyError::UnknownBuiltin(value.to_string()))
}

/// What the lookup order consults, passed in so tests need not touch the
/// process environment.
#[derive(Debug, Clone, Default)]
pub struct LookupEnv {
    /// `$PORTGUARD_POLICY` (a path need not be UTF-8).
    pub portguard_policy: Option<std::ffi::OsString>,
    /// Current directory.
    pub cwd: Option<PathBuf>,
    /// `$XDG_CONFIG_HOME`.
    pub xdg_config_home: Option<PathBuf>,
    /// `$HOME`.
    pub home: Option<PathBuf>,
}

impl LookupEnv {
    /// The real environment of this process. Empty variables count as unset,
    /// as the XDG base directory spec says.
    pub fn from_process() -> Self {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        LookupEnv {
            portguard_policy: var("PORTGUARD_POLICY"),
            cwd: std::env::current_dir().ok(),
            xdg_config_home: var("XDG_CONFIG_HOME").map(PathBuf::from),
            home: var("HOME").map(PathBuf::from),
        }
    }
}

/// Whether a lookup candidate is there. Anything at the path counts — a
/// FIFO, a directory, a dangling symlink, a file we may not read — and is
/// then loaded, so that it is an error (exit 2) rather than silently
/// skipped in favour of the built-in policy, which terminates. Only "no
/// such file" (or a parent that is not a directory) means absent; a path
/// that cannot even be looked at is an error too.
fn candidate(path: &Path) -> Result<bool, PolicyError> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                || e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) =>
        {
            Ok(false)
        }
        Err(source) => Err(PolicyError::Read {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// Picks the policy: `--policy`, then `$PORTGUARD_POLICY`, then
/// `./portguard.toml`, then `$XDG_CONFIG_HOME/portguard/policy.toml` (or
/// `~/.config/...`), then built-in `headroom`. Returns the source and a short
/// phrase saying why it was chosen (printed by `-v`). A lookup file that
/// exists is chosen even when it cannot be read, so that loading it fails
/// (see [`candidate`]).
pub fn locate(
    explicit: Option<&str>,
    env: &LookupEnv,
) -> Result<(PolicySource, &'static str), PolicyError> {
    if let Some(p) = explicit {
        return Ok((parse_policy_arg(p)?, "--policy"));
    }
    if let Some(p) = &env.portguard_policy {
        // Built-in names are ASCII, so a value that is not UTF-8 is a path.
        let source = match p.to_str() {
            Some(s) => parse_policy_arg(s)?,
            None => PolicySource::File(PathBuf::from(p)),
        };
        return Ok((source, "$PORTGUARD_POLICY"));
    }
    if let Some(cwd) = &env.cwd {
        let local = cwd.join("portguard.toml");
        if candidate(&local)? {
            return Ok((PolicySource::File(local), "./portguard.toml"));
        }
    }
    let config = env
        .xdg_config_home
        .clone()
        .or_else(|| env.home.as_ref().map(|h| h.join(".config")));
    if let Some(dir) = config {
        let user = dir.join("portguard").join("policy.toml");
        if candidate(&user)? {
            return Ok((PolicySource::File(user), "user configuration"));
        }
    }
    Ok((PolicySource::Builtin("headroom"), "default"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::load_source;

    /// With every check, regexes included (loading a built-in to run it
    /// skips the regex check, see [`PolicySource::load`]).
    #[test]
    fn every_builtin_passes_every_check_without_warnings() {
        for (name, text) in BUILTINS {
            let policy = load_source(text, PolicySource::Builtin(name))
                .and_then(|p| p.compile().map(|()| p).map_err(PolicyError::Invalid))
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(policy.name, name);
            assert!(policy.warnings.is_empty(), "{name}: {:?}", policy.warnings);
            let running = PolicySource::Builtin(name).load().unwrap();
            assert!(running.warnings.is_empty(), "{name}");
        }
    }

    /// `resolve`, `who` and `run` load a built-in through
    /// [`PolicySource::load`]: it must not parse the `[[test]]` cases (they
    /// were a third of a free-port `resolve`), and must still be the whole
    /// policy: the same rules and defaults as the file.
    #[test]
    fn a_builtin_loads_without_its_test_cases_and_with_every_rule() {
        for (name, text) in BUILTINS {
            let at = text
                .find(TESTS_MARKER)
                .unwrap_or_else(|| panic!("{name}: no `{}` line", TESTS_MARKER.trim()));
            let (rules, tests) = text.split_at(at);
            assert_eq!(rules_part(text).trim_end(), rules.trim_end());
            assert!(
                !rules.contains("[[test]]"),
                "{name}: a test before the marker"
            );
            // After the marker: comments, then only `[[test]]` tables and
            // their subtables.
            let first = tests.find("\n[[test]]").unwrap();
            assert!(
                tests[..first]
                    .lines()
                    .all(|l| l.is_empty() || l.starts_with('#')),
                "{name}: a setting between the marker and the first test"
            );
            for line in tests.lines().filter(|l| l.starts_with('[')) {
                assert!(
                    ["[[test]]", "[[test.", "[test."]
                        .iter()
                        .any(|t| line.starts_with(t)),
                    "{name}: {line} after the marker"
                );
            }
            let running = PolicySource::Builtin(name).load().unwrap();
            assert!(running.tests.is_empty(), "{name}: test cases were parsed");
            let whole = load_source(text, PolicySource::Builtin(name)).unwrap();
            assert!(!whole.tests.is_empty(), "{name}: no test cases");
            let names = |p: &Policy| p.rules.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
            assert_eq!(names(&running), names(&whole), "{name}");
            assert_eq!(running.description, whole.description, "{name}");
            assert_eq!(
                format!("{:?}", running.defaults),
                format!("{:?}", whole.defaults),
                "{name}"
            );
        }
    }

    /// What skipping the regex check leaves: a bad regex still fails as
    /// soon as it would be used (a held port compiles every regex first),
    /// with its place in the file.
    #[test]
    fn an_unchecked_regex_is_still_checked_when_compiled() {
        let text = "[[rule]]\nname = \"r\"\nmatch.cmdline = '('\naction = \"refuse\"\n";
        let source = PolicySource::File("p.toml".into());
        assert!(load_source(text, source.clone()).is_err());
        let policy = load_with(text, source, false).unwrap();
        let err = policy.compile().unwrap_err();
        assert_eq!(err.diagnostics.len(), 1);
        assert!(
            err.diagnostics[0].message.contains("invalid regex"),
            "{err:?}"
        );
        let at = text.find("'('").unwrap();
        assert_eq!(err.diagnostics[0].span, Some(at..at + 3));
    }

    #[test]
    fn policy_argument_is_a_path_or_a_builtin_name() {
        assert_eq!(
            parse_policy_arg("headroom").unwrap(),
            PolicySource::Builtin("headroom")
        );
        assert_eq!(
            parse_policy_arg("x.toml").unwrap(),
            PolicySource::File("x.toml".into())
        );
        assert_eq!(
            parse_policy_arg("dir/x").unwrap(),
            PolicySource::File("dir/x".into())
        );
        let err = parse_policy_arg("nope").unwrap_err().to_string();
        assert!(
            err.contains("'nope'") && err.contains("headroom, headroom-reuse, mine, safe"),
            "{err}"
        );
    }

    #[test]
    fn lookup_order() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = dir.path().join("cwd");
        let xdg = dir.path().join("xdg");
        let home = dir.path().join("home");
        for d in [
            &cwd,
            &xdg.join("portguard"),
            &home.join(".config/portguard"),
        ] {
            std::fs::create_dir_all(d).unwrap();
        }
        let mut env = LookupEnv {
            portguard_policy: None,
            cwd: Some(cwd.clone()),
            xdg_config_home: None,
            home: Some(home.clone()),
        };
        assert_eq!(
            locate(None, &env).unwrap(),
            (PolicySource::Builtin("headroom"), "default")
        );

        std::fs::write(home.join(".config/portguard/policy.toml"), "").unwrap();
        assert_eq!(
            locate(None, &env).unwrap().0,
            PolicySource::File(home.join(".config/portguard/policy.toml"))
        );
        std::fs::write(xdg.join("portguard/policy.toml"), "").unwrap();
        env.xdg_config_home = Some(xdg.clone());
        assert_eq!(
            locate(None, &env).unwrap().0,
            PolicySource::File(xdg.join("portguard/policy.toml"))
        );
        std::fs::write(cwd.join("portguard.toml"), "").unwrap();
        assert_eq!(
            locate(None, &env).unwrap().0,
            PolicySource::File(cwd.join("portguard.toml"))
        );
        env.portguard_policy = Some("safe".into());
        assert_eq!(locate(None, &env).unwrap().0, PolicySource::Builtin("safe"));
        assert_eq!(
            locate(Some("headroom"), &env).unwrap(),
            (PolicySource::Builtin("headroom"), "--policy")
        );
    }

    #[test]
    fn a_lookup_file_that_cannot_be_read_is_an_error_not_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = dir.path().join("cwd");
        let xdg = dir.path().join("xdg");
        std::fs::create_dir_all(&cwd).unwrap();
        std::fs::create_dir_all(xdg.join("portguard")).unwrap();
        let env = LookupEnv {
            portguard_policy: None,
            cwd: Some(cwd.clone()),
            xdg_config_home: Some(xdg.clone()),
            home: None,
        };
        let local = cwd.join("portguard.toml");
        let user = xdg.join("portguard/policy.toml");
        let mkfifo = |p: &Path| {
            let ok = std::process::Command::new("mkfifo")
                .arg(p)
                .status()
                .unwrap();
            assert!(ok.success());
        };
        let remove = |p: &Path| {
            if p.is_dir() {
                std::fs::remove_dir(p).unwrap();
            } else {
                std::fs::remove_file(p).unwrap();
            }
        };
        type Make<'a> = &'a dyn Fn(&Path);
        let makers: [(&str, Make); 3] = [
            ("a FIFO", &mkfifo),
            ("a directory", &|p: &Path| std::fs::create_dir(p).unwrap()),
            ("a dangling symlink", &|p: &Path| {
                std::os::unix::fs::symlink("nowhere.toml", p).unwrap()
            }),
        ];
        for path in [&local, &user] {
            for (what, make) in &makers {
                make(path);
                let (source, _) = locate(None, &env).unwrap();
                assert_eq!(source, PolicySource::File(path.to_path_buf()), "{what}");
                let err = source.load().unwrap_err().to_string();
                assert!(
                    err.starts_with(&format!("cannot read policy {}", path.display())),
                    "{what}: {err}"
                );
                remove(path);
            }
        }
        // A configuration directory that is a file hides nothing.
        let not_dir = dir.path().join("file");
        std::fs::write(&not_dir, "").unwrap();
        let env = LookupEnv {
            xdg_config_home: Some(not_dir),
            ..env
        };
        assert_eq!(
            locate(None, &env).unwrap(),
            (PolicySource::Builtin("headroom"), "default")
        );
    }
}
