//! Hostile input (issue 5, "Hostile input"): huge, deeply nested, binary and
//! non-UTF-8 policies, policy paths that are not UTF-8, regexes over the
//! regex crate's size limit, command lines with newlines, escapes, invalid
//! UTF-8 or a megabyte of arguments, and a policy test with 10,000 owners.
//!
//! Issue 10 added inputs that used to hang or eat memory: policies that are
//! FIFOs, devices or directories (also as lookup candidates), files over
//! the 1 MiB limit, regexes that together compile to gigabytes or take
//! seconds to parse, policies whose test cases check millions of owners
//! against rules, test cases that use `$self` without a `self`, and a lock
//! directory another user made.
//!
//! Every case must end in a clear result — the documented exit code with a
//! message — in bounded time and memory. No input may make portguard panic:
//! the binary turns a panic into exit 70 and the test also rejects 101 and
//! death by a signal (a stack overflow, or an allocation over the memory
//! limit, aborts). Each binary run is hermetic (temp cwd, `HOME` and
//! `XDG_CONFIG_HOME` inside it, no `PORTGUARD_POLICY`), runs with its
//! address space limited to [`MEMORY_LIMIT_KIB`] (`ulimit -v`) and is
//! killed if it overruns its time limit, so a regression fails the test
//! instead of hanging the suite or exhausting the machine.

use portguard::discovery::proc::parse::parse_cmdline;
use portguard::evaluate::{evaluate, Context};
use portguard::fixtures::{self, HolderBuilder, INODE};
use portguard::model::{Holder, PortState};
use portguard::policy::{load_source, PolicyError, PolicySource};
use portguard::report::{explain, human, json, PolicyInfo};
use portguard::resolver::{End, PortReport, Round};
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PORTGUARD: &str = env!("CARGO_BIN_EXE_portguard");

/// How long one portguard run may take before it counts as a hang. Generous
/// for a debug build on a shared 2-core machine; the measured times are
/// printed (`--nocapture`) and far below it.
const LIMIT: Duration = Duration::from_secs(30);

/// Address space of one portguard run (`ulimit -v`, KiB): 256 MiB. A debug
/// build checking the largest policies the limits allow stays far below
/// it (see `the_largest_policies_the_limits_allow_load_in_bounded_memory`).
const MEMORY_LIMIT_KIB: u64 = 256 << 10;

/// How long a run that must be quick (a clear error from a size check or
/// an estimate) may take: far above the measured times, far below a hang.
const QUICK: Duration = Duration::from_secs(10);

/// The result of one portguard run.
#[derive(Debug)]
struct Run {
    /// Exit code; `None` when killed by a signal (stack overflow, abort) or
    /// by the time limit.
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
    timed_out: bool,
}

impl Run {
    /// The run ended by itself, without panicking or dying of a signal.
    #[track_caller]
    fn assert_clean(&self) -> &Self {
        assert!(
            !self.timed_out,
            "portguard hung (killed after {:?}): {self:?}",
            self.took
        );
        let code = self
            .code
            .unwrap_or_else(|| panic!("killed by a signal: {self:?}"));
        assert_ne!(code, 101, "portguard panicked without its hook: {self:?}");
        assert_ne!(code, 70, "portguard hit an internal error: {}", self.stderr);
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
        self
    }

    /// The run ended cleanly with `code`.
    #[track_caller]
    fn expect(&self, code: i32) -> &Self {
        self.assert_clean();
        assert_eq!(self.code, Some(code), "{self:?}");
        self
    }
}

/// Reads a pipe to the end on its own thread, so a child that prints
/// megabytes never blocks on a full pipe.
fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    })
}

fn wait_limited(mut child: Child, limit: Duration) -> Run {
    let start = Instant::now();
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let (status, timed_out) = loop {
        if let Some(status) = child.try_wait().expect("wait for portguard") {
            break (Some(status), false);
        }
        if start.elapsed() > limit {
            // Only the child we started, by its handle.
            let _ = child.kill();
            let _ = child.wait();
            break (None, true);
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let took = start.elapsed();
    Run {
        code: status.and_then(|s| s.code()),
        stdout: String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned(),
        stderr: String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned(),
        took,
        timed_out,
    }
}

/// Runs portguard hermetically in `dir` with extra environment variables,
/// its address space limited to [`MEMORY_LIMIT_KIB`] and its time to
/// `limit`. The shell limits itself and then becomes portguard (`exec`), so
/// killing the child kills portguard.
fn portguard_env(dir: &Path, args: &[&OsStr], env: &[(&str, &OsStr)], limit: Duration) -> Run {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -v \"$0\" && exec \"$@\"")
        .arg(MEMORY_LIMIT_KIB.to_string())
        .arg(PORTGUARD)
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env_remove("PORTGUARD_POLICY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let run = wait_limited(cmd.spawn().expect("start portguard"), limit);
    eprintln!("portguard {args:?}: exit {:?} in {:?}", run.code, run.took);
    run
}

fn portguard(dir: &Path, args: &[&OsStr]) -> Run {
    portguard_env(dir, args, &[], LIMIT)
}

/// The first `n` characters of `s`, for assertion messages about huge output.
fn head(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// A port nothing listens on right now (the kernel picked it).
fn free_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().unwrap().port().to_string()
}

fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write policy");
    path
}

fn load(text: &str) -> Result<portguard::policy::Policy, PolicyError> {
    load_source(text, PolicySource::File("hostile.toml".into()))
}

// ---------------------------------------------------------------------------
// Size
// ---------------------------------------------------------------------------

/// The size limit of a policy file (1 MiB).
const MAX_POLICY: usize = 1 << 20;

/// At least `size` bytes of valid policy: rules of ~10 KB (long
/// descriptions, ports, a regex and users each).
fn big_policy(size: usize) -> String {
    let pad = "lorem ipsum dolor sit amet lorem ipsum dolor sit amet lorem ipsum dolor sit amet\n"
        .repeat(125);
    let mut text = String::with_capacity(size + 20_000);
    let mut i = 0;
    while text.len() < size {
        let _ = write!(
            text,
            "[[rule]]\nname = \"r{i}\"\ndescription = \"\"\"{pad}\"\"\"\nports = [{}, \"9000-9010\"]\nmatch.cmdline = '^server-{i}\\b'\nmatch.user = [\"$self\", 1000]\naction = \"refuse\"\n",
            i + 1
        );
        i += 1;
    }
    text
}

#[test]
fn a_policy_of_almost_a_megabyte_gets_a_clear_result_in_bounded_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut valid = big_policy(MAX_POLICY - 20_000);
    valid.truncate(valid.rfind("[[rule]]").unwrap());
    assert!(valid.len() > MAX_POLICY - 40_000 && valid.len() <= MAX_POLICY - 20);
    let rules = valid.matches("[[rule]]").count();
    let lines = valid.lines().count();
    let good = write(dir.path(), "big.toml", &valid);
    let bad = write(
        dir.path(),
        "big-typo.toml",
        format!("{valid}acton = \"refuse\"\n"),
    );

    let run = portguard(dir.path(), &[os("check"), good.as_os_str()]);
    run.expect(0);
    assert!(
        run.stdout.contains(&format!("ok ({rules} rules")),
        "{}",
        run.stdout
    );
    assert!(run.took < QUICK);

    // The error is the last line of the megabyte, and it says so.
    let run = portguard(dir.path(), &[os("check"), bad.as_os_str()]);
    run.expect(2);
    assert!(run.stderr.contains("acton"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("big-typo.toml:{}:1", lines + 1)),
        "{}",
        head(&run.stderr, 2000)
    );
}

/// Runs portguard every way a policy can arrive for the file `path` —
/// `check`, `test`, `--policy`, `$PORTGUARD_POLICY`, and (made there by
/// `place`) as `./portguard.toml` and the XDG configuration file — and
/// requires exit 2 quickly with `needle` in the message.
fn every_way_is_a_clear_error(dir: &Path, path: &Path, place: impl Fn(&Path), needle: &str) {
    let port = free_port();
    let explain = [os("resolve"), os(&port), os("--explain")];
    let p = path.as_os_str();
    type Way<'a> = (&'a str, Vec<&'a OsStr>, Vec<(&'a str, &'a OsStr)>);
    let ways: [Way; 4] = [
        ("check", vec![os("check"), p], vec![]),
        ("test", vec![os("test"), p], vec![]),
        (
            "--policy",
            [&explain[..], &[os("--policy"), p]].concat(),
            vec![],
        ),
        (
            "$PORTGUARD_POLICY",
            explain.to_vec(),
            vec![("PORTGUARD_POLICY", p)],
        ),
    ];
    for (how, args, env) in ways {
        let run = portguard_env(dir, &args, &env, QUICK);
        run.expect(2);
        assert!(run.stderr.contains(needle), "{how}: {}", run.stderr);
    }
    // The lookup order's candidates (`portguard_env` runs in `dir`, with
    // `XDG_CONFIG_HOME` = `dir/config`): each is used, and fails, rather
    // than skipped in favour of the built-in policy, which terminates.
    std::fs::create_dir_all(dir.join("config/portguard")).unwrap();
    for candidate in [
        dir.join("portguard.toml"),
        dir.join("config/portguard/policy.toml"),
    ] {
        place(&candidate);
        let run = portguard_env(dir, &explain, &[], QUICK);
        run.expect(2);
        assert!(
            run.stderr.contains(needle) && run.stderr.contains(&candidate.display().to_string()),
            "{}: {}",
            candidate.display(),
            run.stderr
        );
        std::fs::remove_file(&candidate)
            .or_else(|_| std::fs::remove_dir(&candidate))
            .unwrap();
    }
}

#[test]
fn policies_over_a_megabyte_are_a_clear_error_every_way_they_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let text = big_policy(10 * MAX_POLICY);
    let path = write(dir.path(), "big.toml", &text);
    every_way_is_a_clear_error(
        dir.path(),
        &path,
        |at| {
            std::fs::write(at, &text).unwrap();
        },
        "and a policy may be at most 1 MiB (1048576 bytes)",
    );
    // One byte over.
    let over = write(dir.path(), "over.toml", vec![b'#'; MAX_POLICY + 1]);
    let run = portguard_env(dir.path(), &[os("check"), over.as_os_str()], &[], QUICK);
    run.expect(2);
    assert!(run.stderr.contains("it is 1048577 bytes"), "{}", run.stderr);
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(status.success());
}

/// A FIFO never blocks the open (it used to, forever), and a device that
/// never ends (/dev/zero, which used to grow memory by ~500 MB/s) or a
/// directory is refused before anything is read.
#[test]
fn fifos_devices_and_directories_are_a_clear_error_every_way_they_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("p.toml");
    mkfifo(&fifo);
    every_way_is_a_clear_error(
        dir.path(),
        &fifo,
        mkfifo,
        "is a FIFO (named pipe); a policy must be a regular file",
    );
    every_way_is_a_clear_error(
        dir.path(),
        Path::new("/dev/zero"),
        |at| std::os::unix::fs::symlink("/dev/zero", at).unwrap(),
        "is a character device; a policy must be a regular file",
    );
    let sub = dir.path().join("policy.d");
    std::fs::create_dir(&sub).unwrap();
    every_way_is_a_clear_error(
        dir.path(),
        &sub,
        |at| std::fs::create_dir(at).unwrap(),
        "is a directory; a policy must be a regular file",
    );
    // A dangling symlink as a lookup candidate is not "absent" either.
    every_way_is_a_clear_error(
        dir.path(),
        &dir.path().join("missing.toml"),
        |at| std::os::unix::fs::symlink("missing.toml", at).unwrap(),
        "No such file or directory",
    );
}

#[test]
fn a_policy_with_thousands_of_errors_is_reported_in_bounded_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    // Three errors in each of 1000 rules: a regex, a port, a signal.
    for i in 0..1000 {
        let _ = write!(
            text,
            "[[rule]]\nname = \"r{i}\"\ndescription = \"padding padding padding padding padding padding padding padding padding padding\"\nports = [0]\nmatch.cmdline = '(server-{i}'\naction = \"terminate\"\nsignal = \"SIGNOPE\"\n"
        );
    }
    let path = write(dir.path(), "errors.toml", &text);
    let run = portguard_env(dir.path(), &[os("check"), path.as_os_str()], &[], QUICK);
    run.expect(2);
    assert!(
        run.stderr.contains("has 3000 errors"),
        "{}",
        &run.stderr[run.stderr.len().saturating_sub(300)..]
    );
}

// ---------------------------------------------------------------------------
// Nesting
// ---------------------------------------------------------------------------

fn nested_policies(depth: usize) -> Vec<(&'static str, String)> {
    let open = "[".repeat(depth);
    let close = "]".repeat(depth);
    let inline = format!("{}1{}", "{b = ".repeat(depth), "}".repeat(depth));
    let rule = "[[rule]]\nname = \"r\"\n";
    vec![
        ("unknown key, nested arrays", format!("a = {open}{close}\n")),
        ("unknown key, nested inline tables", format!("a = {inline}\n")),
        (
            "match.user, nested arrays",
            format!("{rule}match.user = {open}1{close}\naction = \"refuse\"\n"),
        ),
        (
            "match.user, nested inline tables",
            format!("{rule}match.user = {inline}\naction = \"refuse\"\n"),
        ),
        (
            "ports, nested arrays",
            format!("{rule}ports = {open}1{close}\naction = \"refuse\"\n"),
        ),
        (
            "escalate, nested arrays",
            format!("{rule}action = \"terminate\"\nescalate = {open}{close}\n"),
        ),
        (
            "test self, nested arrays",
            format!("{rule}action = \"refuse\"\n[[test]]\nname = \"t\"\nport = 1\nexpect = {{ rule = \"r\" }}\nself = {open}{close}\n"),
        ),
        ("table header", format!("{open}a{close}\n")),
        (
            "dotted table header",
            format!("[rule.{}]\n", vec!["a"; depth].join(".")),
        ),
        ("dotted key", format!("{} = 1\n", vec!["a"; depth].join("."))),
    ]
}

#[test]
fn deeply_nested_tables_and_arrays_are_an_error_not_a_stack_overflow() {
    let dir = tempfile::tempdir().unwrap();
    for (what, text) in nested_policies(10_000) {
        // In this thread (a test thread's small stack) through the library...
        let err = load(&text).expect_err(what).to_string();
        assert!(err.contains("error"), "{what}: {err}");
        // ...and through the binary, on every command that loads a policy.
        let path = write(dir.path(), "nested.toml", &text);
        let run = portguard(dir.path(), &[os("check"), path.as_os_str()]);
        run.expect(2);
        assert!(run.stderr.contains("nested.toml"), "{what}: {}", run.stderr);
        if what == "match.user, nested arrays" {
            let port = free_port();
            let args = [os("resolve"), os(&port), os("--explain"), os("--policy")];
            let run = portguard(dir.path(), &[&args[..], &[path.as_os_str()]].concat());
            run.expect(2);
            portguard(dir.path(), &[os("test"), path.as_os_str()]).expect(2);
        }
    }
    // 200,000 levels (400 KB of brackets) are no different.
    let text = format!(
        "[[rule]]\nname = \"r\"\nmatch.user = {}{}\naction = \"refuse\"\n",
        "[".repeat(200_000),
        "]".repeat(200_000)
    );
    let path = write(dir.path(), "deeper.toml", &text);
    portguard(dir.path(), &[os("check"), path.as_os_str()]).expect(2);
}

// ---------------------------------------------------------------------------
// Bytes: NUL, invalid UTF-8, non-UTF-8 paths
// ---------------------------------------------------------------------------

#[test]
fn nul_bytes_in_a_policy() {
    let dir = tempfile::tempdir().unwrap();
    // A raw NUL is not TOML: an error at its line and column.
    for (text, at) in [
        (
            &b"[[rule]]\nname = \"r\"\naction = \"refuse\"\n\0\n"[..],
            "raw.toml:4:",
        ),
        (b"name = \"a\0b\"\n", "raw.toml:1:"),
        (
            b"# comment \0\n[[rule]]\nname = \"r\"\naction = \"refuse\"\n",
            "raw.toml:1:",
        ),
        (b"\0\0\0\0", "raw.toml:1:"),
    ] {
        let path = write(dir.path(), "raw.toml", text);
        let run = portguard(dir.path(), &[os("check"), path.as_os_str()]);
        run.expect(2);
        assert!(run.stderr.contains(at), "{:?}: {}", text, run.stderr);
    }
    // An escaped NUL is a valid character: it loads, matches and renders.
    let text = r#"name = "nul\u0000name"
[[rule]]
name = "nul"
match.cmdline = '\x00|a b'
action = "refuse"
message = "{cmdline} \u0000"
[[test]]
name = "an escaped NUL in argv"
port = 8080
expect = { rule = "nul", outcome = "refused" }
owners = [{ pid = 5, ppid = 1, uid = 1000, exe = "/bin/a\u0000", cmdline = ["a\u0000b", "c"] }]
"#;
    let path = write(dir.path(), "escaped.toml", text);
    portguard(dir.path(), &[os("check"), path.as_os_str()]).expect(0);
    let run = portguard(dir.path(), &[os("test"), path.as_os_str()]);
    run.expect(0);
    assert!(run.stdout.contains("1 passed, 0 failed"), "{}", run.stdout);
    let port = free_port();
    portguard(
        dir.path(),
        &[
            os("resolve"),
            os(&port),
            os("--explain"),
            os("--policy"),
            path.as_os_str(),
        ],
    )
    .expect(0);
}

#[test]
fn invalid_utf8_policies_are_a_clear_error_on_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    for (bytes, at) in [
        (&b"name = \"\xff\"\n"[..], ":1:9"),
        (
            b"[[rule]]\nname = \"r\"\naction = \"refuse\"\n# \xc3\n",
            ":4:3",
        ),
        // A truncated multi-byte character at the very end.
        (
            b"[[rule]]\nname = \"r\"\naction = \"refuse\"\n#\xe2\x82",
            ":4:2",
        ),
        // A lone continuation byte right before a multi-byte character.
        (b"name = \"\x80\xc3\xa9\"\n", ":1:9"),
        (b"\xfe\xff\x00n\x00a\x00m\x00e", ":1:1"),
    ] {
        let path = write(dir.path(), "bad.toml", bytes);
        let commands: [Vec<&OsStr>; 3] = [
            vec![os("check"), path.as_os_str()],
            vec![os("test"), path.as_os_str()],
            vec![
                os("resolve"),
                os(&port),
                os("--explain"),
                os("--policy"),
                path.as_os_str(),
            ],
        ];
        for args in commands {
            let run = portguard(dir.path(), &args);
            run.expect(2);
            assert!(
                run.stderr.contains("not valid UTF-8")
                    && run.stderr.contains(&format!("bad.toml{at}")),
                "{bytes:?} {args:?}: {}",
                run.stderr
            );
        }
    }
}

/// `dir/p\xff\xfe.toml`: a file name that is not UTF-8.
fn non_utf8_path(dir: &Path, stem: &[u8]) -> PathBuf {
    let mut name = stem.to_vec();
    name.extend_from_slice(b"\xff\xfe.toml");
    dir.join(OsString::from_vec(name))
}

#[test]
fn policy_paths_that_are_not_utf8_work_or_are_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = non_utf8_path(dir.path(), b"p");
    assert!(path.to_str().is_none());
    std::fs::write(&path, include_str!("../rules/headroom.toml")).unwrap();

    // `check` and `test` take paths: they work, naming the file lossily.
    let run = portguard(dir.path(), &[os("check"), path.as_os_str()]);
    run.expect(0);
    assert!(
        run.stdout.contains("p\u{fffd}\u{fffd}.toml: ok"),
        "{}",
        run.stdout
    );
    let run = portguard(dir.path(), &[os("test"), path.as_os_str()]);
    run.expect(0);
    assert!(run.stdout.contains(" passed, 0 failed"), "{}", run.stdout);

    // A broken policy at such a path: its diagnostics name it.
    let broken = non_utf8_path(dir.path(), b"broken");
    std::fs::write(&broken, "acton = 1\n").unwrap();
    let run = portguard(dir.path(), &[os("check"), broken.as_os_str()]);
    run.expect(2);
    assert!(
        run.stderr.contains("broken\u{fffd}\u{fffd}.toml:1:1"),
        "{}",
        run.stderr
    );

    // A missing one: "cannot read".
    let missing = non_utf8_path(dir.path(), b"missing");
    let run = portguard(dir.path(), &[os("check"), missing.as_os_str()]);
    run.expect(2);
    assert!(run.stderr.contains("cannot read policy"), "{}", run.stderr);

    // `--policy` is text: a non-UTF-8 value is a usage error with a message.
    let port = free_port();
    let run = portguard(
        dir.path(),
        &[
            os("resolve"),
            os(&port),
            os("--explain"),
            os("--policy"),
            path.as_os_str(),
        ],
    );
    run.expect(2);
    assert!(run.stderr.contains("UTF-8"), "{}", run.stderr);
}

#[test]
fn portguard_policy_naming_a_non_utf8_path_is_used_or_clearly_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = non_utf8_path(dir.path(), b"p");
    std::fs::write(&path, include_str!("../rules/safe.toml")).unwrap();
    let port = free_port();
    let run = portguard_env(
        dir.path(),
        &[os("resolve"), os(&port), os("--explain"), os("-v")],
        &[("PORTGUARD_POLICY", path.as_os_str())],
        LIMIT,
    );
    run.assert_clean();
    let used = run.code == Some(0) && run.stdout.contains("policy safe");
    let clearly_rejected = run.code == Some(2) && run.stderr.contains("UTF-8");
    assert!(used || clearly_rejected, "{run:?}");
}

/// Found by the `policy_load` fuzz target: a diagnostic's message quotes
/// the policy (a test's name, the rule it expects, an unknown placeholder),
/// and was printed raw, so `portguard check` of someone else's policy could
/// clear the screen, set the terminal's title or disguise a name with bidi
/// controls. The source line under it was already escaped.
#[test]
fn diagnostics_escape_what_they_quote_from_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let policy = "[[rule]]\nname = \"r\"\naction = \"refuse\"\nmessage = \"{\\u001b[2J}\"\n\
                  [[test]]\nname = \"evil\\u001b]0;owned\\u0007\\u202e\"\nport = 1\n\
                  expect = { rule = \"\\u001b[31mr\\u2066\" }\n";
    let path = write(dir.path(), "p.toml", policy);
    for cmd in ["check", "test"] {
        let run = portguard(dir.path(), &[os(cmd), path.as_os_str()]);
        run.expect(2);
        assert!(run.stderr.contains("evil"), "{cmd}: {}", run.stderr);
        let raw = run
            .stderr
            .chars()
            .find(|&c| c != '\n' && portguard::terminal::is_unsafe(c));
        assert_eq!(raw, None, "{cmd} printed a raw control: {:?}", run.stderr);
        assert!(
            run.stderr.contains(r"evil\u{1b}]0;owned\u{7}\u{202e}"),
            "{cmd}: {}",
            run.stderr
        );
    }
    // JSON stays exact.
    let err = load(policy).unwrap_err();
    let PolicyError::Invalid(invalid) = err else {
        panic!("{err}")
    };
    let docs = json::diagnostics("p.toml", &invalid.text, &invalid.diagnostics);
    assert!(
        docs.iter()
            .any(|d| d.message.contains("evil\u{1b}]0;owned\u{7}\u{202e}")),
        "{docs:?}"
    );
}

// ---------------------------------------------------------------------------
// Regexes
// ---------------------------------------------------------------------------

/// The error of a policy whose regexes do not compile: at load time, or
/// (regexes are compiled on first use) from [`Policy::compile`], which
/// `check`, `test` and `resolve` of a held port run first.
fn compile_error(text: &str) -> String {
    match load(text) {
        Err(e) => e.to_string(),
        Ok(policy) => policy.compile().expect_err(text).render_all(),
    }
}

#[test]
fn regexes_over_the_size_limit_are_a_clear_error_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let rule = "[[rule]]\nname = \"r\"\n";
    for (text, line) in [
        (format!("{rule}match.cmdline = '(?:a{{1000}}){{1000}}'\naction = \"refuse\"\n"), 3),
        (format!("{rule}match.exe = '((((a{{100}}){{100}}){{100}}){{100}})'\naction = \"refuse\"\n"), 3),
        (
            format!("{rule}action = \"reuse\"\nhealth = \"http://127.0.0.1:{{port}}/\"\nhealth_body = 'a{{10000}}{{10000}}'\n"),
            5,
        ),
    ] {
        let path = write(dir.path(), "regex.toml", &text);
        for command in ["check", "test"] {
            let run = portguard(dir.path(), &[os(command), path.as_os_str()]);
            run.expect(2);
            assert!(
                run.stderr.contains("regex is too large")
                    && run.stderr.contains(&format!("regex.toml:{line}:")),
                "{text}: {}",
                run.stderr
            );
            assert!(run.took < Duration::from_secs(10), "{text}: {:?}", run.took);
        }
    }
    // Through the library: loading defers compiling, `Policy::compile` reports it.
    let err = compile_error(
        "[[rule]]\nname = \"r\"\nmatch.exe = 'a{10000}{10000}'\naction = \"refuse\"\n",
    );
    assert!(
        err.contains("regex is too large") && err.contains("hostile.toml:3:13"),
        "{err}"
    );
}

/// `n` rules whose `match.cmdline` is `re`.
fn regex_rules(n: usize, re: &str) -> String {
    let mut text = String::new();
    for i in 0..n {
        let _ = write!(
            text,
            "[[rule]]\nname = \"r{i}\"\nmatch.cmdline = '{re}'\naction = \"refuse\"\n"
        );
    }
    text
}

/// Policies whose regexes together would take seconds and gigabytes to
/// parse or compile (each regex alone within the old per-regex limit),
/// with what the error must say.
fn expensive_regex_policies() -> Vec<(&'static str, String, &'static str)> {
    vec![
        // 12-18 s and 0.6-1.2 GB before (release).
        (
            "50 rules of \\w{200}N",
            regex_rules(50, "\\w{200}N"),
            "regex is too large",
        ),
        // Several fit in the budget, then one does not.
        (
            "50 rules of \\w{60}N",
            regex_rules(50, "\\w{60}N"),
            "the policy's regexes together compile to more than 16 MiB",
        ),
        // Killed after 120 s at 2.7 GB before (release; 9.6 GB reported).
        (
            "5000 rules of \\w{50}[a-z]{40}N",
            regex_rules(5000, "\\w{50}[a-z]{40}N"),
            "the policy has 5000 rules; at most 1000 are allowed",
        ),
        (
            "1000 rules of \\w{50}[a-z]{40}N",
            regex_rules(1000, "\\w{50}[a-z]{40}N"),
            "the policy's regexes together compile to more than 16 MiB",
        ),
        // 8.6 s and 2 GB at load before, even for a free port.
        (
            "one regex of 300,000 \\w",
            regex_rules(1, &"\\w".repeat(300_000)),
            "the policy's regexes together are longer than 32 KiB",
        ),
        (
            "4100 Unicode classes",
            regex_rules(410, &"\\pL".repeat(10)),
            "more than 4000 Unicode classes",
        ),
        // 3.7 s at load before: case folding walks every code point.
        (
            "(?i) and 100 \\p{Any}",
            regex_rules(1, &format!("(?i){}", "\\p{Any}".repeat(100))),
            "the policy's case-insensitive classes are too large",
        ),
    ]
}

#[test]
fn regexes_that_together_are_too_expensive_are_a_clear_error_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    for (what, text, needle) in expensive_regex_policies() {
        let path = write(dir.path(), "regexes.toml", &text);
        for args in [
            vec![os("check"), path.as_os_str()],
            vec![os("test"), path.as_os_str()],
        ] {
            let run = portguard_env(dir.path(), &args, &[], QUICK);
            run.expect(2);
            assert!(
                run.stderr.contains(needle) && run.stderr.contains("regexes.toml:"),
                "{what}: {}",
                head(&run.stderr, 3000)
            );
            assert!(
                run.stderr.contains("= help: "),
                "{what}: {}",
                head(&run.stderr, 3000)
            );
            // Well under 2 s in a release build; a debug build on a busy
            // machine gets more room (its regex engine is optimised too).
            assert!(run.took < Duration::from_secs(5), "{what}: {:?}", run.took);
        }
        // A free port needs no regex: what loading checks is refused there
        // too, and what only compiling finds is found once a port is held.
        let run = portguard_env(
            dir.path(),
            &[
                os("resolve"),
                os(&port),
                os("--explain"),
                os("--policy"),
                path.as_os_str(),
            ],
            &[],
            QUICK,
        );
        run.assert_clean();
        assert!(run.took < Duration::from_secs(5), "{what}: {:?}", run.took);
    }
}

/// Policies right at each limit: they load, check and test, under the
/// memory limit and quickly. Measured (release, this suite's machine):
/// each well under 1 s and 70 MB.
#[test]
fn the_largest_policies_the_limits_allow_load_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    // 1000 rules, each of whose test cases' owners checks every rule:
    // 200 cases of one owner, 200,000 checks.
    let mut checks = String::new();
    for i in 0..1000 {
        let _ = write!(
            checks,
            "[[rule]]\nname = \"r{i}\"\nmatch.user = {}\naction = \"refuse\"\n",
            100_000 + i
        );
    }
    for i in 0..200 {
        let _ = write!(
            checks,
            "[[test]]\nname = \"t{i}\"\nport = 80\nexpect.rule = \"default\"\nowners = [{{ pid = 5, uid = 1 }}]\n"
        );
    }
    let at_limits = [
        ("1000 rules, 200,000 test checks", checks),
        // Four of these fit in the compiled-regex budget.
        ("4 rules of \\w{60}N", regex_rules(4, "\\w{60}N")),
        ("4000 Unicode classes", regex_rules(400, &"\\s".repeat(10))),
        ("32 KiB of regex", regex_rules(32, &"a".repeat(1024))),
        ("3 (?i)\\p{Any}", regex_rules(3, "(?i)\\p{Any}")),
    ];
    for (what, text) in at_limits {
        let path = write(dir.path(), "limits.toml", &text);
        for command in ["check", "test"] {
            let run = portguard_env(dir.path(), &[os(command), path.as_os_str()], &[], QUICK);
            run.expect(0);
            assert!(run.took < Duration::from_secs(5), "{what}: {:?}", run.took);
        }
    }
}

#[test]
fn the_budget_error_names_the_regex_that_did_not_fit() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "budget.toml", regex_rules(50, "\\w{60}N"));
    let run = portguard_env(dir.path(), &[os("check"), path.as_os_str()], &[], QUICK);
    run.expect(2);
    // Exactly one error, at a rule after the first few, with its column.
    assert!(
        run.stderr.ends_with("budget.toml has 1 error\n"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("compile to more than 16 MiB: this one needs more than the "),
        "{}",
        run.stderr
    );
    let at = run
        .stderr
        .lines()
        .find_map(|l| l.split_once("budget.toml:").map(|(_, at)| at))
        .unwrap_or_else(|| panic!("{}", run.stderr));
    let (line, column) = at.split_once(':').unwrap();
    let line: usize = line.parse().unwrap();
    assert_eq!(column, "17", "{}", run.stderr);
    assert!(line > 4 * 2 && (line - 3) % 4 == 0, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("help: simplify this regex or the ones before it"),
        "{}",
        run.stderr
    );
}

/// 6,000 rules and 6,000 test cases took 248 s (release) in `portguard test`.
#[test]
fn test_cases_that_would_check_millions_of_owners_are_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for i in 0..1000 {
        let _ = write!(
            text,
            "[[rule]]\nname = \"r{i}\"\nmatch.user = {}\naction = \"refuse\"\n",
            100_000 + i
        );
    }
    for i in 0..1000 {
        let _ = write!(
            text,
            "[[test]]\nname = \"t{i}\"\nport = 80\nexpect.rule = \"default\"\nowners = [{{ pid = 5, uid = 1 }}]\n"
        );
    }
    let path = write(dir.path(), "checks.toml", &text);
    for command in ["check", "test"] {
        let run = portguard_env(dir.path(), &[os(command), path.as_os_str()], &[], QUICK);
        run.expect(2);
        assert!(
            run.stderr.contains(
                "the test cases up to this one check more than 200000 owners against rules"
            ),
            "{}",
            head(&run.stderr, 2000)
        );
        assert!(run.took < Duration::from_secs(5), "{:?}", run.took);
    }
}

#[test]
fn a_test_case_that_uses_self_without_giving_it_is_a_load_error() {
    let dir = tempfile::tempdir().unwrap();
    let text = "[[rule]]\nname = \"mine\"\nmatch.user = \"$self\"\naction = \"refuse\"\n\n[[test]]\nname = \"my proxy\"\nport = 8787\nexpect = { rule = \"default\" }\nowners = [{ pid = 5, ppid = 1, uid = 1000, user = \"alice\" }]\n";
    let path = write(dir.path(), "self.toml", text);
    for command in ["check", "test"] {
        let run = portguard(dir.path(), &[os(command), path.as_os_str()]);
        run.expect(2);
        assert!(
            run.stderr.contains("self.toml:6:1")
                && run.stderr.contains("test \"my proxy\" gives no `self`")
                && run
                    .stderr
                    .contains("help: add `self = \"alice\"` (a user name or uid) to the test case"),
            "{}",
            run.stderr
        );
    }
    let fixed = write(
        dir.path(),
        "fixed.toml",
        text.replace("port = 8787", "port = 8787\nself = \"bob\""),
    );
    let run = portguard(dir.path(), &[os("test"), fixed.as_os_str()]);
    run.expect(0);
}

// ---------------------------------------------------------------------------
// Command lines
// ---------------------------------------------------------------------------

fn holder(pid: u32, argv: Vec<String>) -> Holder {
    HolderBuilder::new(pid)
        .start(u64::from(pid))
        .inodes(&[INODE])
        .with(|h| h.cmdline = Some(argv))
        .build()
}

fn state(holders: Vec<Holder>) -> PortState {
    fixtures::state(8787, holders)
}

fn ctx() -> Context {
    fixtures::context()
}

/// Evaluates and renders `state` every way a run can: trace, result, JSON.
fn render_all(policy: &portguard::policy::Policy, state: PortState) -> (String, String, String) {
    let state = fixtures::without_clients(policy, state);
    let d = evaluate(policy, &state, &ctx());
    let report = PortReport {
        port: state.port,
        protocol: state.protocol,
        dry_run: true,
        rounds: vec![Round { state, decision: d }],
        steps: Vec::new(),
        end: End::Planned,
        now: None,
        lingering: 0,
    };
    let info = PolicyInfo::new(policy, "--policy");
    let trace = explain::trace_text(&report, &info);
    let result = human::result_text(&report);
    let json = json::resolve_json(&[report], &info, portguard::exit::Exit::Refused, Vec::new());
    (trace, result, json)
}

const HOSTILE_ARGV: &[u8] =
    b"python3\0-c\0import x\nprint(1)\0\x1b[2J\x1b]0;pwned\x07\0\xff\xfe\xc3\0-m\0headroom.cli\0proxy\0";

#[test]
fn cmdlines_with_newlines_escapes_and_invalid_utf8_match_and_render() {
    let argv = parse_cmdline(HOSTILE_ARGV);
    assert_eq!(
        argv,
        [
            "python3",
            "-c",
            "import x\nprint(1)",
            "\u{1b}[2J\u{1b}]0;pwned\u{7}",
            "\u{fffd}\u{fffd}\u{fffd}",
            "-m",
            "headroom.cli",
            "proxy"
        ]
    );
    let policy = load(
        "[[rule]]\nname = \"newline\"\nmatch.cmdline = '(?s)import x.print\\(1\\).*\\x{fffd}'\naction = \"refuse\"\nmessage = \"{cmdline} on {port}\"\n",
    )
    .unwrap();
    let (trace, result, json) = render_all(&policy, state(vec![holder(42, argv.clone())]));
    // Matching sees the real argv, newline and all.
    assert!(trace.contains("APPLIES"), "{trace}");
    // JSON keeps the exact argv (escaped by JSON itself).
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    let got: Vec<String> = doc["ports"][0]["holders"][0]["cmdline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, argv);
    assert_eq!(doc["ports"][0]["rule"], "newline");
    // The criterion's "seen" value and the message are escaped.
    assert!(trace.contains(r"import x\nprint(1) \u{1b}[2J"), "{trace}");
    assert!(
        result
            .lines()
            .next()
            .unwrap()
            .contains(r"import x\nprint(1)"),
        "{result}"
    );
    // An argv that is nothing but separators or empty.
    for raw in [&b""[..], b"\0", b"\0\0\0", b"\n", b"\xff"] {
        let argv = parse_cmdline(raw);
        let _ = render_all(&policy, state(vec![holder(43, argv)]));
    }
}

#[test]
fn human_output_escapes_control_characters_of_a_foreign_argv() {
    let policy = load("[[rule]]\nname = \"r\"\naction = \"refuse\"\n").unwrap();
    let st = state(vec![holder(42, parse_cmdline(HOSTILE_ARGV))]);
    let who = human::who_text(std::slice::from_ref(&st));
    let (trace, result, _) = render_all(&policy, st);
    for (what, text) in [("who", &who), ("trace", &trace), ("result", &result)] {
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{what}: {text:?}"
        );
        assert!(
            !text.lines().any(|l| l.starts_with("print(1)")),
            "{what}: the argv's newline forged a line: {text}"
        );
    }
}

/// Found by the `evaluate` fuzz target: a container's id was printed raw in
/// the holder lines (its name and image were escaped). The id comes from
/// the Docker API, or from a test case, where it defaults to the name.
#[test]
fn human_output_escapes_every_field_of_a_container() {
    let policy = load("[[rule]]\nname = \"r\"\naction = \"refuse\"\n").unwrap();
    let container = portguard::model::Container {
        id: "\u{1b}]0;x\u{7}\u{2066}0123456789".into(),
        name: "db\u{202e}".into(),
        image: "pg\u{1b}[2J".into(),
        compose_project: None,
        compose_service: None,
    };
    let proxy = HolderBuilder::new(42)
        .argv(&["/usr/bin/docker-proxy", "-proto", "tcp"])
        .with(|h| h.container = Some(container.clone()))
        .build();
    let st = state(vec![proxy]);
    let who = human::who_text(std::slice::from_ref(&st));
    let (trace, result, json) = render_all(&policy, st);
    for (what, text) in [("who", &who), ("trace", &trace), ("result", &result)] {
        let raw = text
            .chars()
            .find(|&c| c != '\n' && portguard::terminal::is_unsafe(c));
        assert_eq!(raw, None, "{what}: {text:?}");
        assert!(
            text.contains(r"id \u{1b}]0;x\u{7}\u{2066}0"),
            "{what}: {text}"
        );
    }
    // JSON stays exact.
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        doc["ports"][0]["holders"][0]["container"]["id"].as_str(),
        Some(container.id.as_str())
    );
}

#[test]
fn a_megabyte_of_argv_is_matched_and_rendered() {
    let mut argv = vec![
        "python3".to_string(),
        "-m".into(),
        "headroom.cli".into(),
        "proxy".into(),
    ];
    argv.push("x".repeat(800 * 1024));
    argv.extend((0..50_000).map(|i| format!("a{i}")));
    let total: usize = argv.iter().map(|a| a.len() + 1).sum();
    assert!(total > 1024 * 1024);
    let start = Instant::now();
    let headroom = PolicySource::Builtin("headroom").load().unwrap();
    let (trace, _, json) = render_all(&headroom, state(vec![holder(42, argv.clone())]));
    assert!(
        trace.contains("stale-headroom-proxy (line"),
        "{}",
        head(&trace, 500)
    );
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["ports"][0]["rule"], "stale-headroom-proxy");
    assert_eq!(
        doc["ports"][0]["holders"][0]["cmdline"]
            .as_array()
            .unwrap()
            .len(),
        argv.len()
    );
    eprintln!("1 MB argv: evaluated and rendered in {:?}", start.elapsed());
    assert!(start.elapsed() < Duration::from_secs(10));
}

/// A process whose argv has newlines, escapes, invalid UTF-8 and over a
/// megabyte of arguments, holding a port: `who` and `--explain` report it.
#[test]
fn a_real_holder_with_a_hostile_megabyte_argv_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let script = "import socket,sys,time\ns=socket.socket()\ns.bind(('127.0.0.1',0))\ns.listen()\nprint(s.getsockname()[1],flush=True)\nsys.stdin.read()\n";
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(script);
    for arg in [
        &b"line1\nline2"[..],
        b"\x1b[2J\x1b]0;pwned\x07",
        b"\xff\xfe",
    ] {
        cmd.arg(OsStr::from_bytes(arg));
    }
    // Linux caps one argument at 128 KiB: ten of 100 KB each.
    for _ in 0..10 {
        cmd.arg("y".repeat(100_000));
    }
    let Ok(mut child) = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    else {
        eprintln!("skipped: python3 is not available");
        return;
    };
    // Killed (by its handle) and reaped when the test ends, pass or fail.
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut out = child.stdout.take().unwrap();
    let mut child = Kill(child);
    let mut line = Vec::new();
    let mut byte = [0u8];
    while out.read(&mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    let port = String::from_utf8(line).unwrap();
    assert!(port.parse::<u16>().is_ok(), "holder said {port:?}");
    let raw = std::fs::read(format!("/proc/{}/cmdline", child.0.id())).unwrap();
    assert!(raw.len() > 1_000_000);

    let run = portguard(
        dir.path(),
        &[os("who"), os(&port), os("--format"), os("json")],
    );
    run.expect(0);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let argv = doc["ports"][0]["holders"][0]["cmdline"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(argv.len(), 3 + 3 + 10, "{:?}", &argv[..6]);
    assert_eq!(argv[3], "line1\nline2");
    assert_eq!(argv[4], "\u{1b}[2J\u{1b}]0;pwned\u{7}");
    assert_eq!(argv[5], "\u{fffd}\u{fffd}");
    portguard(dir.path(), &[os("who"), os(&port)]).expect(0);
    for policy in ["safe", "headroom"] {
        let run = portguard(
            dir.path(),
            &[
                os("resolve"),
                os(&port),
                os("--explain"),
                os("--policy"),
                os(policy),
            ],
        );
        run.expect(4);
        assert!(
            run.stdout.contains(&format!("pid {}", child.0.id())),
            "{}",
            head(&run.stdout, 300)
        );
        // The one-line plan escapes the argv.
        let plan = run.stdout.lines().find(|l| l.starts_with("plan:")).unwrap();
        assert!(
            plan.contains(r"line1\nline2 \u{1b}[2J"),
            "{}",
            head(plan, 200)
        );
    }
    let _ = child.0.stdin.take();
}

// ---------------------------------------------------------------------------
// Policy tests with many owners
// ---------------------------------------------------------------------------

/// A policy whose one test case has `n` owners; `chain`: each owner is the
/// child of the previous one (one process tree `n` deep), else all are
/// orphans (`n` groups).
fn many_owners(n: usize, chain: bool) -> String {
    let mut t = String::from(
        "[[rule]]\nname = \"servers\"\nmatch.cmdline = '^server '\naction = \"refuse\"\n[[test]]\nname = \"many owners\"\nport = 8080\nexpect = { rule = \"servers\", outcome = \"refused\" }\n",
    );
    for i in 0..n {
        let ppid = if chain && i > 0 { 99 + i } else { 1 };
        let _ = write!(
            t,
            "[[test.owners]]\npid = {}\nppid = {ppid}\nuid = 1000\ncmdline = [\"server {i}\"]\n",
            100 + i
        );
    }
    t
}

#[test]
fn a_policy_test_with_ten_thousand_owners() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "owners.toml", many_owners(10_000, false));
    let run = portguard(dir.path(), &[os("test"), path.as_os_str()]);
    run.expect(0);
    assert!(run.stdout.contains("1 passed, 0 failed"), "{}", run.stdout);
    assert!(run.took < LIMIT);
}

#[test]
fn a_deep_process_tree_of_ten_thousand_holders_is_grouped_in_bounded_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "chain.toml", many_owners(10_000, true));
    let run = portguard_env(
        dir.path(),
        &[os("test"), path.as_os_str()],
        &[],
        Duration::from_secs(10),
    );
    run.expect(0);
}

// ---------------------------------------------------------------------------
// The lock directory
// ---------------------------------------------------------------------------

/// As `nobody`, `mkdir /tmp/portguard-0` made every root run exit 5 (while
/// `XDG_RUNTIME_DIR` was unset), even on a free port. Run as root in a
/// private mount namespace, with its own /tmp, /run and /root, so the real
/// ones are never touched: another user's directory is passed over (and
/// reported when it was a candidate), the run succeeds, and no lock file
/// is left behind.
#[test]
fn a_lock_directory_another_user_made_does_not_stop_root() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root (for a mount namespace and another user)");
        return;
    }
    let probe = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "true"])
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        eprintln!("skipped: cannot make a mount namespace here");
        return;
    }
    let (p1, p2) = (free_port(), free_port());
    // The binary is opened before the mounts, which could hide it (a target
    // directory under /tmp or /root), and run through /proc/self/fd/3.
    let script = r#"
set -eu
exec 3<"$PG"
mount -t tmpfs -o mode=1777 portguard-test /tmp
mount -t tmpfs -o mode=0755 portguard-test /run
mount -t tmpfs -o mode=0700 portguard-test /root
setpriv --reuid=nobody --regid=nogroup --clear-groups mkdir -m 0755 /tmp/portguard-0
stat -c 'hostile %U %n' /tmp/portguard-0
set +e
/proc/self/fd/3 resolve "$P1" --policy headroom -v; echo "exit $?"
ls -A /run/portguard /tmp/portguard-0 /root/.local/state/portguard/locks 2>/dev/null | grep '\.lock$' | sed 's/^/left /'
rm -rf /run/portguard && mkdir -m 0700 /run/portguard && chown nobody /run/portguard
/proc/self/fd/3 resolve "$P2" --policy headroom; echo "exit $?"
stat -c 'fallback %a %U' /root/.local/state/portguard/locks
ls -A /root/.local/state/portguard/locks | sed 's/^/left /'
"#;
    let child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .env("PG", PORTGUARD)
        .env("P1", &p1)
        .env("P2", &p2)
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("TMPDIR")
        .env_remove("PORTGUARD_POLICY")
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare runs");
    let run = wait_limited(child, LIMIT);
    let out = format!("{}\n--- stderr\n{}", run.stdout, run.stderr);
    assert!(!run.timed_out, "{out}");
    assert!(
        run.stdout.contains("hostile nobody /tmp/portguard-0"),
        "{out}"
    );
    let exits: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("exit "))
        .collect();
    // Both runs of a free port succeed: with /run/portguard, and with the
    // fallback when /run/portguard is someone else's too.
    assert_eq!(exits, ["exit 0", "exit 0"], "{out}");
    // Only the directories that were candidates and someone else's are
    // reported, each once.
    for dir in ["/run/portguard", "/tmp/portguard-0"] {
        assert_eq!(
            run.stderr
                .matches(&format!(
                    "warning: not using the lock directory {dir}: it belongs to nobody (uid 65534)"
                ))
                .count(),
            1,
            "{out}"
        );
    }
    assert!(
        run.stderr
            .contains("using /root/.local/state/portguard/locks"),
        "{out}"
    );
    assert!(run.stdout.contains("fallback 700 root"), "{out}");
    // Lock files are removed on release.
    assert!(!run.stdout.contains("left "), "{out}");
}

// ---------------------------------------------------------------------------
// Durations
// ---------------------------------------------------------------------------

const HUGE_TIMEOUTS: &str = "[defaults]\ntimeout = \"500000000000years\"\n[[rule]]\nname = \"w\"\nmatch.user = 4000000000\naction = \"wait\"\ntimeout = \"500000000000years\"\nthen = \"reuse\"\n";

/// Found by `cargo fuzz run evaluate` (minimised): only `[defaults]` is
/// huge, and a rule's fallback adds it to the rule's own timeout. Before
/// durations were capped, `Policy::longest_timeout` overflowed on it and a
/// real `resolve` of a free port exited 70.
const HUGE_FALLBACK: &str = "[defaults]\naction = \"wait\"\ntimeout = \"500000000000years\"\n[[rule]]\nname = \"r0\"\nmatch.user = 4000000000\naction = \"reuse\"\nthen = \"wait\"\n";

/// Every duration at the longest allowed, fallbacks adding up.
const LONGEST_ALLOWED: &str = "[defaults]\naction = \"wait\"\ngrace = \"23h\"\ntimeout = \"24h\"\n[[rule]]\nname = \"w\"\nmatch.user = 4000000000\naction = \"wait\"\ntimeout = \"24h\"\nthen = \"terminate\"\ngrace = \"23h\"\n[[rule]]\nname = \"r\"\nmatch.user = 4000000001\naction = \"reuse\"\nhealth = \"tcp\"\ntimeout = \"24h\"\nthen = \"wait\"\n";

#[test]
fn huge_durations_are_a_clear_error_and_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    for text in [
        HUGE_TIMEOUTS,
        HUGE_FALLBACK,
        "[[rule]]\nname = \"w\"\nmatch.user = 4000000000\naction = \"wait\"\ntimeout = \"18446744073709551615s\"\n",
    ] {
        let err = load(text).expect_err(text).to_string();
        assert!(err.contains("duration"), "{err}");
        let path = write(dir.path(), "huge.toml", text);
        let run = portguard(dir.path(), &[os("check"), path.as_os_str()]);
        run.expect(2);
        assert!(run.stderr.contains("huge.toml:"), "{}", run.stderr);
        // A real run of a free port too: the policy is checked first.
        let args = [os("resolve"), os(&port), os("--policy"), path.as_os_str()];
        portguard(dir.path(), &args).expect(2);
        let args = [os("resolve"), os(&port), os("--explain"), os("--policy"), path.as_os_str()];
        portguard(dir.path(), &args).expect(2);
    }
    // The longest durations allowed, added up through fallbacks.
    let policy = load(LONGEST_ALLOWED).unwrap();
    assert!(policy.longest_timeout() >= Duration::from_secs(48 * 3600));
    let path = write(dir.path(), "longest.toml", LONGEST_ALLOWED);
    portguard(dir.path(), &[os("check"), path.as_os_str()]).expect(0);
    portguard(
        dir.path(),
        &[os("resolve"), os(&port), os("--policy"), path.as_os_str()],
    )
    .expect(0);
}
