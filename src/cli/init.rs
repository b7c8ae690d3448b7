//! `portguard init [--port P] [--dir D]`: writes a starter `portguard.toml`
//! next to `policy.schema.json` (what `portguard schema` prints), which the
//! policy's first line points editors at. With `--port`, the port's current
//! holders (found as `who` finds them) get a rule of their own and a
//! `[[test]]` case built from what discovery saw: a process of yours is
//! terminated; a container, a systemd service, pid 1, another user's
//! process or one whose pid cannot be seen is refused, as `mine` does.
//!
//! init never overwrites a file: when either file exists it writes neither
//! (exit 2). Each file appears whole or not at all (written aside, then
//! hard-linked into place, which fails rather than replace a file). Before
//! writing, the policy is loaded and its test cases run, so what init
//! writes passes `portguard check --deny-warnings` and `portguard test`.

use super::{CliError, DiscoveryArgs, Io};
use crate::discovery::{backend, proc::self_and_ancestors, users};
use crate::evaluate::cases::run_all;
use crate::exit::Exit;
use crate::model::Holder;
use crate::policy::{load_source, PolicyError, PolicySource};
use crate::ports::PortRange;
use crate::report::starter::{
    self, HolderRule, Kind, SelfUser, Starter, UserValue, POLICY_FILE, SCHEMA_FILE,
};
use clap::Args;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Arguments of `portguard init`.
#[derive(Debug, Clone, Args)]
pub struct InitArgs {
    /// Also write a rule for what holds this port now, with a test case
    /// built from it.
    #[arg(long, value_name = "PORT", value_parser = one_port, value_hint = clap::ValueHint::Other)]
    pub port: Option<u16>,
    /// Write the files into this directory (made when missing) instead of
    /// the current one.
    #[arg(long, value_name = "DIR", value_hint = clap::ValueHint::DirPath)]
    pub dir: Option<PathBuf>,
    /// Protocol and discovery backend (for --port).
    #[command(flatten)]
    pub discovery: DiscoveryArgs,
}

/// `--port`: one port, 1-65535.
fn one_port(s: &str) -> Result<u16, String> {
    let range: PortRange = s
        .parse()
        .map_err(|e: crate::ports::PortError| e.to_string())?;
    if range.first != range.last {
        return Err(format!("--port takes one port, not the range {range}"));
    }
    Ok(range.first)
}

/// How many arguments after argv[0] the cmdline regex names at most
/// (`-m module` counts as one): enough to tell `node server.js` from `node
/// build.js`, few enough to survive changed options.
const MAX_ARGS: usize = 2;

/// Escapes the characters that mean something in a regex outside a class.
/// (`regex::escape` also escapes `-`, `#`, `&` and `~`, which only matter in
/// classes or verbose mode: `pg\-test\-holder` reads worse and means the
/// same.)
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The program part of a cmdline regex, after `^\S*`: argv[0]'s base name
/// (any path before it, any interpreter location) and up to [`MAX_ARGS`]
/// of the arguments that follow, stopping at the first option or number
/// (a port, a pid). `None` when argv[0] gives no name.
pub fn program_pattern(argv: &[String]) -> Option<(String, String)> {
    let first = argv.first()?;
    // A process that rewrote its argv[0] (`sshd: /usr/sbin/sshd -D`) may
    // have spaces in it: the path is what comes before the first one.
    let head = first.find(char::is_whitespace).unwrap_or(first.len());
    let cut = first[..head].rfind('/').map_or(0, |i| i + 1);
    let base = &first[cut..];
    if base.trim().is_empty() {
        return None;
    }
    let mut pattern = escape(base);
    let mut shown = vec![base.to_string()];
    let mut rest = argv[1..].iter().peekable();
    let mut taken = 0;
    while taken < MAX_ARGS {
        let Some(arg) = rest.next() else { break };
        // An interpreter's module or archive names the program: `python3
        // -m uvicorn`, `java -jar app.jar`.
        if arg == "-m" || arg == "-jar" {
            match rest.next() {
                Some(module) if !module.is_empty() && !module.starts_with('-') => {
                    pattern.push_str(&format!(r"\s+{arg}\s+{}", escape(module)));
                    shown.push(format!("{arg} {module}"));
                    taken += 1;
                    continue;
                }
                _ => break,
            }
        }
        let number = !arg.is_empty() && arg.bytes().all(|b| b.is_ascii_digit());
        if arg.is_empty() || arg.starts_with('-') || number || arg.chars().count() > 200 {
            break;
        }
        pattern.push_str(&format!(r"\s+{}", escape(arg)));
        shown.push(arg.clone());
        taken += 1;
    }
    Some((pattern, shown.join(" ")))
}

/// `match.exe` for an executable path: the whole path, anchored; a binary
/// replaced on disk (`/usr/bin/node (deleted)`) matches with or without
/// the mark.
pub fn exe_pattern(exe: &str) -> String {
    match exe.strip_suffix(" (deleted)") {
        Some(path) => format!(r"^{}( \(deleted\))?$", escape(path)),
        None => format!("^{}$", escape(exe)),
    }
}

/// Why a group root gets the rule it gets.
fn kind_of(h: &Holder, self_uid: u32, protected: &[u32]) -> Kind {
    let Some(pid) = h.pid else {
        return Kind::Unseen;
    };
    if h.is_docker_proxy() || h.container.is_some() {
        return Kind::Container {
            identified: h.container.is_some(),
        };
    }
    if let Some(unit) = h.unit.as_ref().filter(|u| u.is_service()) {
        return Kind::Service {
            user_unit: unit.user.is_some(),
        };
    }
    if pid == 1 || protected.contains(&pid) {
        return Kind::Protected;
    }
    if h.uid != self_uid {
        return Kind::OtherUser;
    }
    let identified = h.exe.is_some() || h.cmdline.as_deref().and_then(program_pattern).is_some();
    if identified {
        Kind::Own
    } else {
        Kind::Unseen
    }
}

/// Rule names are lower-case words joined by `-`.
fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
        if out.len() >= 40 {
            break;
        }
    }
    out.trim_end_matches('-').to_string()
}

/// Distinct values in order.
fn distinct<T: PartialEq>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut out = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// One alternative per distinct value: `a` or `(?:a|b)`.
fn alternatives(parts: &[String]) -> String {
    match parts {
        [one] => one.clone(),
        many => format!("(?:{})", many.join("|")),
    }
}

/// The rule for every holder of the port: it matches each group root (a
/// rule applies only when it matches all of them), terminates when every
/// root is a process of yours and refuses otherwise.
pub fn holder_rule(holders: &[Holder], self_uid: u32, protected: &[u32]) -> Option<HolderRule> {
    let roots: Vec<&Holder> = holders
        .iter()
        .filter(|h| {
            !holders
                .iter()
                .any(|o| o.pid.is_some() && o.pid == h.ppid && o.pid != h.pid)
        })
        .collect();
    if roots.is_empty() {
        return None;
    }
    let kinds: Vec<Kind> = roots
        .iter()
        .map(|h| kind_of(h, self_uid, protected))
        .collect();
    // The first refusal in this order speaks for all (a process that can
    // be seen says more than one that cannot); terminate only when every
    // root is yours.
    let rank = |k: &Kind| match k {
        Kind::Container { .. } => 0,
        Kind::Service { .. } => 1,
        Kind::Protected => 2,
        Kind::OtherUser => 3,
        Kind::Unseen => 4,
        Kind::Own => 5,
    };
    let kind = kinds
        .iter()
        .copied()
        .min_by_key(rank)
        .unwrap_or(Kind::Unseen);
    let programs: Vec<Option<(String, String)>> = roots
        .iter()
        .map(|h| h.cmdline.as_deref().and_then(program_pattern))
        .collect();
    let seen = !kinds.contains(&Kind::Unseen);
    // A criterion is written only when every root has the field: a root
    // without it would never satisfy it.
    let cmdline = (seen && programs.iter().all(Option::is_some)).then(|| {
        let parts = distinct(programs.iter().flatten().map(|(p, _)| p.clone()));
        format!(r"^\S*{}(\s|$)", alternatives(&parts))
    });
    let exe = (seen && roots.iter().all(|h| h.exe.is_some())).then(|| {
        let parts = distinct(
            roots
                .iter()
                .filter_map(|h| h.exe.as_deref())
                .map(exe_pattern),
        );
        match parts.as_slice() {
            [one] => one.clone(),
            many => {
                let inner: Vec<String> = many
                    .iter()
                    .map(|p| p.trim_start_matches('^').trim_end_matches('$').to_string())
                    .collect();
                format!("^(?:{})$", inner.join("|"))
            }
        }
    });
    let unit = matches!(kind, Kind::Service { .. })
        .then(|| {
            let names: Vec<String> = roots
                .iter()
                .map(|h| h.unit.as_ref().map(|u| escape(&u.name)))
                .collect::<Option<_>>()?;
            Some(format!("^{}$", alternatives(&distinct(names))))
        })
        .flatten();
    let container = matches!(kind, Kind::Container { identified: true })
        .then(|| {
            let names: Vec<String> = roots
                .iter()
                .map(|h| h.container.as_ref().map(|c| escape(&c.name)))
                .collect::<Option<_>>()?;
            Some(format!("^{}$", alternatives(&distinct(names))))
        })
        .flatten();
    let users = distinct(roots.iter().map(|h| match &h.user {
        _ if h.uid == self_uid => UserValue::Own,
        Some(name) => UserValue::Name(name.clone()),
        None => UserValue::Uid(h.uid),
    }));
    let program =
        match distinct(programs.iter().flatten().map(|(_, shown)| shown.clone())).as_slice() {
            [] => match &roots[0].user {
                Some(name) => format!("a process of user {name}"),
                None => format!("a process of uid {}", roots[0].uid),
            },
            [one] => one.clone(),
            many => many.join(" / "),
        };
    // Named after the program's words without their directories:
    // `python3 pg-test-holder.py` → `python3-pg-test-holder-py`.
    let words: Vec<&str> = program
        .split_whitespace()
        .map(|w| w.rsplit('/').next().unwrap_or(w))
        .collect();
    let name = match slug(&words.join(" ")) {
        s if s.is_empty()
            || ["service", "container", "dev-server", "others"].contains(&s.as_str()) =>
        {
            format!("holder-{s}").trim_end_matches('-').to_string()
        }
        s => s,
    };
    Some(HolderRule {
        name,
        kind,
        program,
        cmdline,
        exe,
        users,
        unit,
        container,
        owners: holders.to_vec(),
    })
}

/// The policy's name: the directory's, when it makes a name.
fn policy_name(dir: &Path) -> String {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let base = std::fs::canonicalize(dir)
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .map(|n| slug(&n))
        .unwrap_or_default();
    if base.is_empty() {
        "project".into()
    } else {
        base
    }
}

/// Loads the text as `portguard check` and `portguard test` would and
/// lists every problem: errors, warnings, failing test cases (by name).
fn self_check(text: &str, path: &Path) -> (Vec<String>, Vec<String>) {
    let policy = match load_source(text, PolicySource::File(path.to_path_buf()))
        .and_then(|p| p.compile().map(|()| p).map_err(PolicyError::Invalid))
    {
        Ok(p) => p,
        Err(PolicyError::Invalid(inv)) => return (vec![inv.render_all()], Vec::new()),
        Err(e) => return (vec![e.to_string()], Vec::new()),
    };
    let mut problems: Vec<String> = policy.warnings.iter().map(|w| w.message.clone()).collect();
    let mut failed = Vec::new();
    for r in run_all(&policy) {
        if !r.passed() {
            problems.push(format!(
                "test \"{}\": {}",
                r.name,
                crate::report::cases::mismatches(&r)
            ));
            failed.push(r.name);
        }
    }
    (problems, failed)
}

/// The policy text, checked as `portguard check --deny-warnings` and
/// `portguard test` will check it; every problem when it does not pass.
/// The example cases use made-up owners: one the holder rule matches
/// first would fail, so it is left out.
fn checked_policy(starter: &mut Starter, path: &Path) -> Result<String, Vec<String>> {
    let mut text = starter::policy_toml(starter);
    let (_, failed) = self_check(&text, path);
    let examples = starter::example_test_names(true);
    let skip: Vec<String> = failed
        .into_iter()
        .filter(|n| examples.contains(&n.as_str()))
        .collect();
    if !skip.is_empty() {
        starter.skip_tests = skip;
        text = starter::policy_toml(starter);
    }
    let (problems, _) = self_check(&text, path);
    if problems.is_empty() {
        Ok(text)
    } else {
        Err(problems)
    }
}

/// Writes `bytes` to `path`, which must not exist: written to a private
/// file beside it, then hard-linked into place (which fails rather than
/// replace a file), so the file appears whole or not at all.
fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new(""));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let aside = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&aside)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&aside);
        return Err(e);
    }
    let linked = std::fs::hard_link(&aside, path);
    let _ = std::fs::remove_file(&aside);
    match linked {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(e),
        // A file system without hard links: create it exclusively instead.
        Err(_) => {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)?;
            let result = f.write_all(bytes).and_then(|()| f.sync_all());
            if result.is_err() {
                let _ = std::fs::remove_file(path);
            }
            result
        }
    }
}

/// `portguard init`.
pub fn run(args: &InitArgs, io: &mut Io<'_>) -> Result<Exit, CliError> {
    // Without --dir, the bare names: `portguard.toml`, as the user typed it.
    let dir = args.dir.clone().unwrap_or_default();
    let policy_path = dir.join(POLICY_FILE);
    let schema_path = dir.join(SCHEMA_FILE);
    // Before anything else: a file in the way ends it, nothing written.
    for path in [&policy_path, &schema_path] {
        if path.symlink_metadata().is_ok() {
            return Err(CliError::Usage(starter::exists(path)));
        }
    }
    let self_uid = rustix::process::getuid().as_raw();
    let self_user = match users::name_of(self_uid) {
        Some(name) => SelfUser::Name(name),
        None => SelfUser::Uid(self_uid),
    };
    let protocol = args.discovery.protocol();
    let holder = match args.port {
        None => None,
        Some(port) => {
            let state = backend(args.discovery.backend.into())
                .discover(port, protocol)
                .map_err(|error| CliError::Discovery { port, error })?;
            let mut holders = state.holders().to_vec();
            for h in &mut holders {
                if h.user.is_none() {
                    h.user = users::name_of(h.uid);
                }
            }
            holder_rule(&holders, self_uid, &self_and_ancestors())
        }
    };
    if args.dir.is_some() {
        std::fs::create_dir_all(&dir)
            .map_err(|e| CliError::Usage(starter::cannot_write(&dir, &e)))?;
    }
    let mut starter = Starter {
        name: policy_name(&dir),
        port: args.port,
        protocol,
        self_user,
        self_uid,
        holder,
        skip_tests: Vec::new(),
    };
    let text = checked_policy(&mut starter, &policy_path)
        .map_err(|problems| CliError::Output(starter::self_check_failed(&problems)))?;
    let schema = crate::policy::schema_json();
    write_new(&schema_path, schema.as_bytes()).map_err(|e| write_error(&schema_path, &e))?;
    if let Err(e) = write_new(&policy_path, text.as_bytes()) {
        // Both or neither: the schema written a moment ago is ours.
        let _ = std::fs::remove_file(&schema_path);
        return Err(write_error(&policy_path, &e));
    }
    let _ = writeln!(io.out, "{}", starter::wrote(&policy_path, &schema_path));
    if let Some(port) = args.port {
        let _ = writeln!(
            io.out,
            "{}",
            starter::port_line(port, protocol, starter.holder.as_ref())
        );
    }
    let _ = writeln!(
        io.out,
        "{}",
        starter::next_steps(&policy_path, args.dir.is_some(), args.port, protocol)
    );
    Ok(Exit::Free)
}

fn write_error(path: &Path, e: &std::io::Error) -> CliError {
    if e.kind() == std::io::ErrorKind::AlreadyExists {
        CliError::Usage(starter::exists(path))
    } else {
        CliError::Usage(starter::cannot_write(path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Container, Unit, Unknown};

    fn argv(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    fn holder(pid: u32, ppid: u32, uid: u32, exe: &str, cmdline: &[&str]) -> Holder {
        let mut h = Holder::unseen(
            uid,
            vec!["127.0.0.1:3000".parse().unwrap()],
            vec![1],
            Unknown::TestOwner,
        );
        h.pid = Some(pid);
        h.ppid = Some(ppid);
        h.unknown = None;
        h.user = Some(if uid == 1000 { "alice" } else { "bob" }.into());
        h.exe = Some(exe.into());
        h.cmdline = Some(argv(cmdline));
        h
    }

    #[test]
    fn program_patterns_anchor_the_program_and_its_first_arguments() {
        let cases: [(&[&str], &str, &str); 8] = [
            (
                &["node", "server.js"],
                r"node\s+server\.js",
                "node server.js",
            ),
            (
                &["/usr/bin/python3.12", "-m", "http.server", "8000"],
                r"python3\.12\s+-m\s+http\.server",
                "python3.12 -m http.server",
            ),
            (
                &[
                    "/home/a/.venv/bin/python3",
                    "-m",
                    "uvicorn",
                    "app:app",
                    "--port",
                    "3000",
                ],
                r"python3\s+-m\s+uvicorn\s+app:app",
                "python3 -m uvicorn app:app",
            ),
            (
                &["node", "/p/node_modules/.bin/vite", "--port", "5173"],
                r"node\s+/p/node_modules/\.bin/vite",
                "node /p/node_modules/.bin/vite",
            ),
            (
                &["/usr/sbin/docker-proxy", "-proto", "tcp"],
                r"docker-proxy",
                "docker-proxy",
            ),
            (
                &["java", "-jar", "/srv/app.jar", "--server.port=8080"],
                r"java\s+-jar\s+/srv/app\.jar",
                "java -jar /srv/app.jar",
            ),
            (
                &["sshd: /usr/sbin/sshd -D [listener]"],
                r"sshd: /usr/sbin/sshd -D \[listener\]",
                "sshd: /usr/sbin/sshd -D [listener]",
            ),
            (
                &["a+b(c)", "x|y", "z", "w"],
                r"a\+b\(c\)\s+x\|y\s+z",
                "a+b(c) x|y z",
            ),
        ];
        for (args, want, shown) in cases {
            let (got, got_shown) = program_pattern(&argv(args)).unwrap();
            assert_eq!(got, want);
            assert_eq!(got_shown, shown);
            let re = regex::Regex::new(&format!(r"^\S*{got}(\s|$)")).unwrap();
            assert!(re.is_match(&args.join(" ")), "{got} vs {args:?}");
        }
        assert_eq!(program_pattern(&argv(&["/usr/bin/"])), None);
        assert_eq!(program_pattern(&[]), None);
    }

    #[test]
    fn patterns_do_not_match_lookalikes() {
        let (p, _) = program_pattern(&argv(&["node", "server.js"])).unwrap();
        let re = regex::Regex::new(&format!(r"^\S*{p}(\s|$)")).unwrap();
        assert!(re.is_match("/usr/local/bin/node server.js --port 3000"));
        for other in [
            "vim node server.js",
            "node server.jsx",
            "node serverXjs",
            "grep node server.js",
        ] {
            assert!(!re.is_match(other), "{other}");
        }
    }

    #[test]
    fn escape_makes_any_text_literal() {
        for s in [
            r"a.b*c+d?e(f)g|h[i]j{k}l^m$n\o",
            "plain-text #&~",
            "ünï code",
        ] {
            let re = regex::Regex::new(&format!("^{}$", escape(s))).unwrap();
            assert!(re.is_match(s), "{s}");
        }
        assert_eq!(exe_pattern("/usr/bin/node"), r"^/usr/bin/node$");
        let deleted = regex::Regex::new(&exe_pattern("/usr/bin/node (deleted)")).unwrap();
        assert!(deleted.is_match("/usr/bin/node") && deleted.is_match("/usr/bin/node (deleted)"));
    }

    #[test]
    fn a_process_of_yours_is_terminated_anything_else_refused() {
        let own = holder(4242, 4000, 1000, "/usr/bin/node", &["node", "server.js"]);
        let r = holder_rule(std::slice::from_ref(&own), 1000, &[]).unwrap();
        assert_eq!(r.kind, Kind::Own);
        assert_eq!(r.name, "node-server-js");
        assert_eq!(r.cmdline.as_deref(), Some(r"^\S*node\s+server\.js(\s|$)"));
        assert_eq!(r.exe.as_deref(), Some(r"^/usr/bin/node$"));
        assert_eq!(r.users, vec![UserValue::Own]);

        let r = holder_rule(std::slice::from_ref(&own), 0, &[]).unwrap();
        assert_eq!(r.kind, Kind::OtherUser);
        assert_eq!(r.users, vec![UserValue::Name("alice".into())]);

        let r = holder_rule(std::slice::from_ref(&own), 1000, &[4242]).unwrap();
        assert_eq!(r.kind, Kind::Protected);

        let mut service = own.clone();
        service.unit = Some(Unit {
            name: "vite.service".into(),
            user: Some(1000),
        });
        let r = holder_rule(&[service], 1000, &[]).unwrap();
        assert_eq!(r.kind, Kind::Service { user_unit: true });
        assert_eq!(r.unit.as_deref(), Some(r"^vite\.service$"));

        let mut scope = own.clone();
        scope.unit = Some(Unit {
            name: "session-3.scope".into(),
            user: None,
        });
        assert_eq!(holder_rule(&[scope], 1000, &[]).unwrap().kind, Kind::Own);

        let mut proxy = holder(
            900,
            800,
            0,
            "/usr/sbin/docker-proxy",
            &["/usr/sbin/docker-proxy", "-proto", "tcp"],
        );
        let r = holder_rule(&[proxy.clone()], 0, &[]).unwrap();
        assert_eq!(r.kind, Kind::Container { identified: false });
        proxy.container = Some(Container {
            id: "ab".repeat(32),
            name: "pg.web".into(),
            image: "postgres:16".into(),
            compose_project: None,
            compose_service: None,
        });
        let r = holder_rule(&[proxy], 0, &[]).unwrap();
        assert_eq!(r.kind, Kind::Container { identified: true });
        assert_eq!(r.container.as_deref(), Some(r"^pg\.web$"));

        let unseen = Holder::unseen(
            1001,
            vec!["127.0.0.1:3000".parse().unwrap()],
            vec![1],
            Unknown::NotYourProcess,
        );
        let r = holder_rule(&[unseen], 1000, &[]).unwrap();
        assert_eq!(r.kind, Kind::Unseen);
        assert_eq!((r.cmdline, r.exe), (None, None));
        assert_eq!(r.users, vec![UserValue::Uid(1001)]);
    }

    /// Every kind of holder gives a policy that passes `check
    /// --deny-warnings` and `test`, whose holder case expects the rule.
    #[test]
    fn every_kind_of_holder_gives_a_policy_that_passes_its_checks() {
        let own = holder(4242, 4000, 1000, "/usr/bin/node", &["node", "server.js"]);
        let mut worker = holder(
            4243,
            4242,
            1000,
            "/usr/bin/node",
            &["node", "server.js", "--worker"],
        );
        worker.exe = None;
        let mut service = holder(
            700,
            1,
            0,
            "/usr/sbin/nginx",
            &["nginx: master process /usr/sbin/nginx -g daemon on;"],
        );
        service.user = Some("root".into());
        service.unit = Some(Unit {
            name: "nginx.service".into(),
            user: None,
        });
        let mut user_service = own.clone();
        user_service.unit = Some(Unit {
            name: "vite@dev.service".into(),
            user: Some(1000),
        });
        let mut proxy = holder(
            900,
            800,
            0,
            "/usr/sbin/docker-proxy",
            &["/usr/sbin/docker-proxy", "-proto", "tcp"],
        );
        proxy.user = Some("root".into());
        let mut container = proxy.clone();
        container.container = Some(Container {
            id: "ab".repeat(32),
            name: "pg-web".into(),
            image: "postgres:16".into(),
            compose_project: None,
            compose_service: None,
        });
        let unseen = Holder::unseen(
            1001,
            vec!["[::1]:3000".parse().unwrap()],
            vec![1],
            Unknown::NotYourProcess,
        );
        let mut strange = holder(
            4300,
            4000,
            1000,
            "/opt/it's (deleted)",
            &["/opt/it's", "a'b\"c\\d", "\u{1b}[2J", "ünï"],
        );
        strange.user = Some("al\"ice".into());
        let mut no_name = holder(4400, 4000, 1000, "/usr/bin/node", &["node"]);
        no_name.user = None;
        let other = holder(5000, 1, 1001, "/usr/bin/node", &["node", "server.js"]);
        let init = holder(1, 0, 1000, "/usr/bin/node", &["node", "server.js"]);
        let b = holder(20, 1, 1000, "/usr/bin/python3", &["python3", "-m", "b"]);
        let cases: Vec<(Vec<Holder>, u32, &str)> = vec![
            (vec![own.clone(), worker], 1000, "terminate"),
            (vec![own.clone()], 0, "refuse"),
            (vec![service], 0, "refuse"),
            (vec![user_service], 1000, "refuse"),
            (vec![proxy], 0, "refuse"),
            (vec![container], 0, "refuse"),
            (vec![unseen.clone()], 1000, "refuse"),
            (vec![unseen], 1001, "refuse"),
            (vec![strange], 1000, "terminate"),
            (vec![no_name], 1000, "terminate"),
            (vec![other.clone()], 1000, "refuse"),
            (vec![init], 1000, "refuse"),
            (vec![own.clone(), b.clone()], 1000, "terminate"),
            (vec![own, other, b], 1000, "refuse"),
        ];
        for (holders, self_uid, action) in cases {
            // As run() sees it: the caller's name is that of their processes.
            let name = holders
                .iter()
                .find(|h| h.uid == self_uid)
                .and_then(|h| h.user.clone())
                .unwrap_or_else(|| if self_uid == 0 { "root" } else { "alice" }.into());
            for self_user in [SelfUser::Name(name), SelfUser::Uid(self_uid)] {
                let rule = holder_rule(&holders, self_uid, &[]).unwrap();
                assert_eq!(rule.kind.terminates(), action == "terminate", "{rule:?}");
                let mut starter = Starter {
                    name: "t".into(),
                    port: Some(3000),
                    protocol: crate::model::Protocol::Tcp,
                    self_user,
                    self_uid,
                    holder: Some(rule.clone()),
                    skip_tests: Vec::new(),
                };
                let text = checked_policy(&mut starter, Path::new("portguard.toml"))
                    .unwrap_or_else(|p| panic!("{p:#?}\n{}", starter::policy_toml(&starter)));
                assert!(text.starts_with("#:schema ./policy.schema.json\n"));
                let policy = load_source(&text, PolicySource::File("p.toml".into())).unwrap();
                let case = &policy.tests[0];
                assert_eq!(
                    case.expect.rule.as_deref(),
                    Some(rule.name.as_str()),
                    "{text}"
                );
                assert_eq!(case.owners.len(), holders.len());
            }
        }
        // A free port: the starter alone.
        let mut starter = Starter {
            name: "t".into(),
            port: Some(3000),
            protocol: crate::model::Protocol::Udp,
            self_user: SelfUser::Name("alice".into()),
            self_uid: 1000,
            holder: None,
            skip_tests: Vec::new(),
        };
        checked_policy(&mut starter, Path::new("portguard.toml")).unwrap();
    }

    #[test]
    fn several_roots_get_one_rule_that_matches_each() {
        let a = holder(10, 1, 1000, "/usr/bin/node", &["node", "a.js"]);
        let a_worker = holder(11, 10, 1000, "/usr/bin/node", &["node", "a.js"]);
        let b = holder(20, 1, 1000, "/usr/bin/python3", &["python3", "-m", "b"]);
        let r = holder_rule(&[a, a_worker, b], 1000, &[]).unwrap();
        assert_eq!(r.kind, Kind::Own);
        assert_eq!(
            r.cmdline.as_deref(),
            Some(r"^\S*(?:node\s+a\.js|python3\s+-m\s+b)(\s|$)")
        );
        assert_eq!(
            r.exe.as_deref(),
            Some(r"^(?:/usr/bin/node|/usr/bin/python3)$")
        );
        assert_eq!(r.owners.len(), 3);
    }
}
