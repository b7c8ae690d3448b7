//! Fixtures for the end-to-end scenarios: real processes that hold ports, and
//! hermetic runs of the real `portguard` binary.
//!
//! Guarantees the scenarios rely on:
//!
//! - **No port races.** A holder's socket is bound by `tests/holders/launch.py`
//!   on port 0 (the kernel picks a port nobody holds) and handed to the holder
//!   program across `execve`, so the pid the test knows *is* the holder and the
//!   port is held from the moment the test learns it. Only `python3 -m
//!   http.server`, which binds by itself, uses a suite-owned port range with
//!   retry (see [`Holder::http_server`]).
//! - **We only ever kill what we started.** Every holder (and each forked worker)
//!   is tracked by pid *and* start time and signalled through a pidfd, so a
//!   recycled pid is never hit. [`Holder`]'s `Drop` SIGKILLs and reaps
//!   everything it started, also when the test panics. The test process is made
//!   a child subreaper, so workers orphaned by the death of their master are
//!   reparented to us and reaped here instead of lingering as zombies (pid 1 of
//!   a container often never reaps). As a last line of defence every holder
//!   exits by itself when the test process is gone.
//! - **Hermetic portguard.** [`Sandbox`] runs the binary in a fresh temp dir as
//!   cwd, with `HOME` and `XDG_CONFIG_HOME` pointing into it and
//!   `PORTGUARD_POLICY` removed, so no stray policy changes the result. Nothing
//!   changes the test process's cwd; tests are safe to run in parallel threads.

#![allow(dead_code)] // each scenario module uses a different part of the fixture layer

use serde_json::Value;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, UdpSocket};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::process::{Pid, PidfdFlags, Signal, WaitOptions};

/// The `portguard` binary under test.
pub const PORTGUARD: &str = env!("CARGO_BIN_EXE_portguard");

/// A portguard run that takes longer than this is a hang: it is killed and
/// the test fails (no scenario legitimately needs more than a few seconds).
pub const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a process may take to disappear after portguard said it was done
/// with it. Generous: this only bounds a failing test, passing ones return at
/// once.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(3);

const LAUNCHER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/holders/launch.py");
const HOLDER_SCRIPT: &str = include_str!("../holders/holder.py");

/// Name of the holder script in the default layout; custom policies match on
/// it (`match.cmdline = 'pg-test-holder'`) so they can never apply to anything
/// but a test holder.
pub const HOLDER_MARK: &str = "pg-test-holder";

// ---------------------------------------------------------------------------
// Python
// ---------------------------------------------------------------------------

/// The real CPython interpreter the holders run on.
#[derive(Debug)]
pub struct Python {
    /// `sys.executable`: an interpreter binary, never a launcher shim (the
    /// `python3` on PATH may be a pyenv shell script).
    pub exe: String,
    /// `base_prefix:base_exec_prefix`, given to holders as `PYTHONHOME`. With an
    /// argv[0] such as `grep` CPython would otherwise derive its prefix from
    /// `/usr/bin/grep` and may not find its standard library.
    pub home: String,
}

/// The interpreter, found once: `$PORTGUARD_TEST_PYTHON` or `python3` on PATH.
pub fn python() -> &'static Python {
    static PYTHON: OnceLock<Python> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let probe = std::env::var("PORTGUARD_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let out = Command::new(&probe)
            .args([
                "-c",
                "import sys; print(sys.executable); print(sys.base_prefix + ':' + sys.base_exec_prefix)",
            ])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {probe}: {e} (the CLI tests need CPython 3)"));
        assert!(out.status.success(), "{probe} failed: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).expect("python prints UTF-8 paths");
        let mut lines = text.lines();
        let exe = lines.next().filter(|l| !l.is_empty()).expect("sys.executable is empty");
        let home = lines.next().expect("sys.base_prefix");
        Python {
            exe: exe.to_owned(),
            home: home.to_owned(),
        }
    })
}

// ---------------------------------------------------------------------------
// Process identity
// ---------------------------------------------------------------------------

/// Start time (clock ticks since boot) of a *running* process, or `None` when
/// it does not exist or is a zombie: a zombie has released its sockets and
/// counts as gone.
pub fn proc_start(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if matches!(fields.first(), Some(&"Z") | Some(&"X")) {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// argv of a process as `/proc/PID/cmdline` reports it.
pub fn proc_cmdline(pid: u32) -> Vec<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    raw.split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// One process this suite started, pinned by (pid, start time) and a pidfd.
#[derive(Debug)]
struct Tracked {
    pid: u32,
    start: u64,
    pidfd: Option<OwnedFd>,
}

impl Tracked {
    /// Pins `pid`, or `None` when it is already gone.
    fn new(pid: u32) -> Option<Tracked> {
        let start = proc_start(pid)?;
        let raw = Pid::from_raw(i32::try_from(pid).ok()?)?;
        let pidfd = rustix::process::pidfd_open(raw, PidfdFlags::empty()).ok();
        // The pidfd refers to whatever had the pid at open time; it is ours
        // only if the start time still matches afterwards.
        if proc_start(pid) != Some(start) {
            return None;
        }
        Some(Tracked { pid, start, pidfd })
    }

    fn is_alive(&self) -> bool {
        proc_start(self.pid) == Some(self.start)
    }

    fn kill(&self) {
        match &self.pidfd {
            Some(fd) => {
                let _ = rustix::process::pidfd_send_signal(fd, Signal::KILL);
            }
            None if self.is_alive() => {
                if let Some(pid) = Pid::from_raw(self.pid as i32) {
                    let _ = rustix::process::kill_process(pid, Signal::KILL);
                }
            }
            None => {}
        }
    }
}

/// Makes the test process a child subreaper (once), so that workers whose
/// master died are reparented to us and can be reaped by pid.
fn become_subreaper() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let me = rustix::process::getpid();
        rustix::process::set_child_subreaper(Some(me)).expect("PR_SET_CHILD_SUBREAPER");
    });
}

fn guard_opts() -> Value {
    let me = std::process::id();
    serde_json::json!([me, proc_start(me).expect("own /proc/self/stat")])
}

// ---------------------------------------------------------------------------
// Holders
// ---------------------------------------------------------------------------

/// Transport of a holder's socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// A TCP socket (listening unless [`HolderBuilder::bound_only`]).
    Tcp,
    /// A bound UDP socket.
    Udp,
}

#[derive(Debug, Clone)]
enum Payload {
    HolderScript,
    Empty,
    PythonSymlink,
}

/// What to start; see [`Holder::tcp`]. `{python}` (the interpreter) and `{dir}`
/// (the holder's private temp dir, also its cwd) are expanded in `exe`, argv
/// and env values; `{port}` in argv becomes the bound port.
#[derive(Debug, Clone)]
pub struct HolderBuilder {
    proto: Proto,
    addr: String,
    listen: bool,
    reuseaddr: bool,
    orphaned: bool,
    exe: String,
    argv: Vec<String>,
    files: Vec<(String, Payload)>,
    env: Vec<(String, String)>,
    workers: u32,
    ignore_sigterm: bool,
    term_delay: Option<Duration>,
    exit_after: Option<Duration>,
    drop_to: Option<(u32, u32)>,
    http_status: u16,
}

impl HolderBuilder {
    fn new(proto: Proto, addr: &str) -> HolderBuilder {
        let script = format!("{HOLDER_MARK}.py");
        HolderBuilder {
            proto,
            addr: addr.to_owned(),
            listen: true,
            reuseaddr: true,
            orphaned: false,
            exe: "{python}".into(),
            argv: vec![
                "{python}".into(),
                format!("{{dir}}/{script}"),
                "--port".into(),
                "{port}".into(),
            ],
            files: vec![(script, Payload::HolderScript)],
            env: Vec::new(),
            workers: 0,
            ignore_sigterm: false,
            term_delay: None,
            exit_after: None,
            drop_to: None,
            http_status: 200,
        }
    }

    /// Answer HTTP requests with this status (200 or 503).
    pub fn http_status(mut self, status: u16) -> Self {
        self.http_status = status;
        self
    }

    /// The holder's argv (what `/proc/PID/cmdline` will show).
    pub fn argv<I, S>(mut self, argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.argv = argv.into_iter().map(Into::into).collect();
        self
    }

    /// The program to exec (default `{python}`); argv[0] is independent of it.
    pub fn exe(mut self, exe: &str) -> Self {
        self.exe = exe.to_owned();
        self
    }

    /// Puts a copy of the holder script at `{dir}/<rel>`.
    pub fn script(mut self, rel: &str) -> Self {
        self.files.push((rel.to_owned(), Payload::HolderScript));
        self
    }

    /// Creates an empty file at `{dir}/<rel>` (e.g. a package `__init__.py`).
    pub fn empty_file(mut self, rel: &str) -> Self {
        self.files.push((rel.to_owned(), Payload::Empty));
        self
    }

    /// Creates `{dir}/<rel>` as a symlink to the real interpreter, the way a
    /// virtualenv's `bin/python3` is.
    pub fn python_symlink(mut self, rel: &str) -> Self {
        self.files.push((rel.to_owned(), Payload::PythonSymlink));
        self
    }

    /// Extra environment for the holder.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Start it as an orphan, as a stale server is: its parent is a
    /// subreaper that adopted it (a process named `systemd`, standing in
    /// for a user's service manager), not the test.
    pub fn orphaned(mut self) -> Self {
        self.orphaned = true;
        self
    }

    /// Start it as a child of the test (the default): its parent is alive.
    pub fn attached(mut self) -> Self {
        self.orphaned = false;
        self
    }

    /// Bind without SO_REUSEADDR (servers set it; the TIME_WAIT its
    /// connections leave then blocks a restart for up to 60 s).
    pub fn no_reuseaddr(mut self) -> Self {
        self.reuseaddr = false;
        self
    }

    /// Fork `n` workers that share the socket (they are holders too).
    pub fn workers(mut self, n: u32) -> Self {
        self.workers = n;
        self
    }

    /// Ignore SIGTERM: only SIGKILL ends it.
    pub fn ignore_sigterm(mut self) -> Self {
        self.ignore_sigterm = true;
        self
    }

    /// On SIGTERM, keep holding the port this long, then exit (a server
    /// draining its requests).
    pub fn term_delay(mut self, delay: Duration) -> Self {
        self.term_delay = Some(delay);
        self
    }

    /// Exit by itself (status 0) this long after it started.
    pub fn exit_after(mut self, after: Duration) -> Self {
        self.exit_after = Some(after);
        self
    }

    /// Run as another user (by name): the holder switches its uid and gid
    /// right after start, keeping argv and executable. Needs root; returns
    /// `None` when the suite is not root or the user does not exist, so the
    /// scenario can be skipped.
    pub fn run_as(mut self, name: &str) -> Option<Self> {
        if !rustix::process::geteuid().is_root() {
            return None;
        }
        let user = nix::unistd::User::from_name(name).ok().flatten()?;
        self.drop_to = Some((user.uid.as_raw(), user.gid.as_raw()));
        Some(self)
    }

    /// TCP: keep the socket bound (with SO_REUSEADDR) but never listen. Such a
    /// socket does not hold the port (docs/safety.md), yet it keeps the kernel from
    /// handing the port to anyone else's bind(0) — a race-free "free port".
    pub fn bound_only(mut self) -> Self {
        assert_eq!(self.proto, Proto::Tcp, "bound_only is a TCP notion");
        self.listen = false;
        self
    }

    /// Starts the holder and waits until it holds the port (and its workers
    /// are forked). Panics with the holder's stderr if it cannot start.
    pub fn spawn(self) -> Holder {
        become_subreaper();
        let py = python();
        let dir = tempfile::Builder::new()
            .prefix("pg-holder-")
            .tempdir()
            .expect("holder temp dir");
        let root = dir.path().to_str().expect("UTF-8 temp path").to_owned();
        let expand = |s: &str| s.replace("{python}", &py.exe).replace("{dir}", &root);

        for (rel, payload) in &self.files {
            let path = dir.path().join(rel);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).expect("holder layout dir");
            }
            match payload {
                Payload::HolderScript => fs::write(&path, HOLDER_SCRIPT).expect("holder script"),
                Payload::Empty => fs::write(&path, "").expect("holder file"),
                Payload::PythonSymlink => {
                    std::os::unix::fs::symlink(&py.exe, &path).expect("python symlink")
                }
            }
        }

        let mut env = serde_json::Map::new();
        env.insert("PYTHONHOME".into(), py.home.clone().into());
        env.insert("PYTHONDONTWRITEBYTECODE".into(), "1".into());
        for (k, v) in &self.env {
            env.insert(k.clone(), expand(v).into());
        }
        let spec = serde_json::json!({
            "proto": match self.proto { Proto::Tcp => "tcp", Proto::Udp => "udp" },
            "addr": self.addr,
            "listen": self.listen,
            "reuseaddr": self.reuseaddr,
            "orphaned": self.orphaned,
            "exe": expand(&self.exe),
            "argv": self.argv.iter().map(|a| expand(a)).collect::<Vec<_>>(),
            "env": env,
            "opts": {
                "workers": self.workers,
                "ignore_sigterm": self.ignore_sigterm,
                "term_delay_ms": self.term_delay.map(|d| d.as_millis() as u64),
                "exit_after_ms": self.exit_after.map(|d| d.as_millis() as u64),
                "drop_to": self.drop_to.map(|(uid, gid)| [uid, gid]),
                "http_status": self.http_status,
                "guard": guard_opts(),
            },
        });

        let stderr_path = dir.path().join("holder-stderr.log");
        let mut child = Command::new(&py.exe)
            .arg(LAUNCHER)
            .env("PG_LAUNCH", spec.to_string())
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(&stderr_path).expect("holder stderr log"))
            .spawn()
            .expect("start the holder launcher");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));

        let fail = |child: &mut Child, what: &str| -> ! {
            let _ = child.kill();
            let _ = child.wait();
            let log = fs::read_to_string(&stderr_path).unwrap_or_default();
            panic!(
                "holder {:?} did not start ({what}); stderr:\n{log}",
                self.argv
            );
        };
        let line = read_line(&mut stdout).unwrap_or_default();
        let mut words = line
            .strip_prefix("port ")
            .unwrap_or_else(|| fail(&mut child, "no port reported"))
            .split_whitespace();
        let port = words
            .next()
            .and_then(|p| p.parse::<u16>().ok())
            .unwrap_or_else(|| fail(&mut child, "bad port line"));
        // An orphaned holder is a grandchild of the launcher: its own pid.
        let holder_pid = match (words.next(), words.next()) {
            (Some("pid"), Some(p)) => p
                .parse::<u32>()
                .unwrap_or_else(|_| fail(&mut child, "bad pid")),
            _ => child.id(),
        };
        let ready = read_line(&mut stdout).unwrap_or_default();
        let Some(worker_list) = ready.strip_prefix("ready") else {
            fail(&mut child, "no ready line")
        };
        let worker_pids: Vec<u32> = worker_list
            .split_whitespace()
            .map(|p| p.parse().expect("worker pid"))
            .collect();

        let main = Tracked::new(holder_pid).unwrap_or_else(|| fail(&mut child, "exited at once"));
        let workers: Vec<Tracked> = worker_pids
            .iter()
            .map(|&w| Tracked::new(w).unwrap_or_else(|| fail(&mut child, "a worker exited")))
            .collect();
        Holder::adopt(
            child, main, workers, port, self.addr, self.proto, stdout, dir,
        )
    }
}

fn read_line(reader: &mut impl BufRead) -> Option<String> {
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim_end().to_owned()),
    }
}

#[derive(Debug, Default)]
struct ExitCell {
    status: Mutex<Option<ExitStatus>>,
    cond: Condvar,
}

/// A running process (plus its forked workers) holding a port. Killed with
/// SIGKILL and reaped on drop.
#[derive(Debug)]
pub struct Holder {
    port: u16,
    addr: String,
    proto: Proto,
    main: Tracked,
    workers: Vec<Tracked>,
    exit: Arc<ExitCell>,
    reaper: Option<JoinHandle<()>>,
    _stdout: BufReader<ChildStdout>,
    dir: tempfile::TempDir,
}

impl Holder {
    /// A plain TCP holder listening on `addr` (`127.0.0.1` or `::1`, the latter
    /// IPv6-only), argv `<python> {dir}/pg-test-holder.py --port N`.
    pub fn tcp(addr: &str) -> HolderBuilder {
        HolderBuilder::new(Proto::Tcp, addr)
    }

    /// A plain UDP holder bound on `addr`.
    pub fn udp(addr: &str) -> HolderBuilder {
        HolderBuilder::new(Proto::Udp, addr)
    }

    /// The headroom proxy as its console script runs it (one of the two forms in docs/headroom.md):
    /// `{dir}/venv/bin/python3 {dir}/venv/bin/headroom proxy --port N`, where
    /// `venv/bin/python3` is a symlink to the base interpreter, so the
    /// executable is the base interpreter and never contains "headroom".
    /// (Orphaned, as a stale proxy is; `.attached()` for one in use.)
    pub fn headroom_console_script() -> HolderBuilder {
        Holder::tcp("127.0.0.1")
            .python_symlink("venv/bin/python3")
            .script("venv/bin/headroom")
            .exe("{dir}/venv/bin/python3")
            .argv([
                "{dir}/venv/bin/python3",
                "{dir}/venv/bin/headroom",
                "proxy",
                "--port",
                "{port}",
            ])
            .orphaned()
    }

    /// The headroom proxy as `headroom wrap` spawns it (the other form in docs/headroom.md):
    /// `<python> -m headroom.cli proxy --port N --workers 1`, with the
    /// `headroom` package importable through `PYTHONPATH`. (Orphaned, as a
    /// stale proxy is; `.attached()` for one in use.)
    pub fn headroom_module() -> HolderBuilder {
        Holder::tcp("127.0.0.1")
            .empty_file("pkg/headroom/__init__.py")
            .script("pkg/headroom/cli.py")
            .env("PYTHONPATH", "{dir}/pkg")
            .argv([
                "{python}",
                "-m",
                "headroom.cli",
                "proxy",
                "--port",
                "{port}",
                "--workers",
                "1",
            ])
            .orphaned()
    }

    /// A look-alike in a headroom checkout: the interpreter runs with the given
    /// argv (e.g. `grep headroom proxy`), executing the holder script placed
    /// at `{dir}/<script>` — which must be argv[1], the path Python runs.
    pub fn lookalike(argv: &[&str], script: &str) -> HolderBuilder {
        assert_eq!(argv.get(1).copied(), Some(script), "python runs argv[1]");
        Holder::tcp("127.0.0.1")
            .script(script)
            .argv(argv.iter().copied())
    }

    /// `python3 -m http.server --bind 127.0.0.1 N`, a foreign server that binds
    /// by itself. N comes from a suite-owned range (47000-47999, starting at an
    /// offset derived from our pid so parallel suites spread out); a port that
    /// is taken makes the server exit, and the next one is tried.
    pub fn http_server() -> Holder {
        become_subreaper();
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let py = python();
        let dir = tempfile::Builder::new()
            .prefix("pg-http-")
            .tempdir()
            .expect("temp dir");
        let stderr_path = dir.path().join("http-stderr.log");
        for _ in 0..40 {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let port = 47000 + ((std::process::id().wrapping_mul(7) + n * 13) % 1000) as u16;
            let mut child = Command::new(&py.exe)
                .args([
                    "-m",
                    "http.server",
                    "--bind",
                    "127.0.0.1",
                    &port.to_string(),
                ])
                .current_dir(dir.path())
                .env("PYTHONUNBUFFERED", "1")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(fs::File::create(&stderr_path).expect("stderr log"))
                .spawn()
                .expect("start python3 -m http.server");
            let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
            // http.server prints this line only after bind() and listen() succeeded.
            match read_line(&mut stdout) {
                Some(line) if line.starts_with("Serving HTTP") => {
                    let main = Tracked::new(child.id()).expect("http.server alive");
                    return Holder::adopt(
                        child,
                        main,
                        Vec::new(),
                        port,
                        "127.0.0.1".into(),
                        Proto::Tcp,
                        stdout,
                        dir,
                    );
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        let log = fs::read_to_string(&stderr_path).unwrap_or_default();
        panic!("http.server could not bind any port in 47000-47999; last stderr:\n{log}");
    }

    #[allow(clippy::too_many_arguments)]
    fn adopt(
        mut child: Child,
        main: Tracked,
        workers: Vec<Tracked>,
        port: u16,
        addr: String,
        proto: Proto,
        stdout: BufReader<ChildStdout>,
        dir: tempfile::TempDir,
    ) -> Holder {
        let exit = Arc::new(ExitCell::default());
        let cell = Arc::clone(&exit);
        let orphans: Vec<(u32, u64)> = workers.iter().map(|w| (w.pid, w.start)).collect();
        // Reap the holder the moment it dies, as its real parent (a shell, init)
        // would; a zombie we forgot to reap would look alive to `kill(pid, 0)`.
        let reaper = std::thread::spawn(move || {
            let status = child.wait().expect("wait for holder");
            *cell.status.lock().unwrap() = Some(status);
            cell.cond.notify_all();
            // Its workers were reparented to us (subreaper): reap them too,
            // each only while it is still the process we started.
            for (pid, start) in orphans {
                let Some(raw) = Pid::from_raw(pid as i32) else {
                    continue;
                };
                loop {
                    let ours = fs::read_to_string(format!("/proc/{pid}/stat"))
                        .ok()
                        .and_then(|s| {
                            let rest = s[s.rfind(')')? + 2..].to_owned();
                            rest.split_whitespace().nth(19)?.parse::<u64>().ok()
                        })
                        == Some(start);
                    if !ours {
                        break;
                    }
                    match rustix::process::waitpid(Some(raw), WaitOptions::NOHANG) {
                        Ok(Some(_)) | Err(_) => break,
                        Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            }
        });
        Holder {
            port,
            addr,
            proto,
            main,
            workers,
            exit,
            reaper: Some(reaper),
            _stdout: stdout,
            dir,
        }
    }

    /// The port it holds.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its pid (the same before and after the launcher's exec; for an
    /// orphaned holder, the launcher's grandchild).
    pub fn pid(&self) -> u32 {
        self.main.pid
    }

    /// Its parent's pid as `/proc` shows it now.
    pub fn parent(&self) -> Option<u32> {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.pid())).ok()?;
        stat[stat.rfind(')')? + 2..]
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    /// Pids of the forked workers.
    pub fn worker_pids(&self) -> Vec<u32> {
        self.workers.iter().map(|w| w.pid).collect()
    }

    /// The main pid followed by the workers' pids.
    pub fn all_pids(&self) -> Vec<u32> {
        std::iter::once(self.pid())
            .chain(self.worker_pids())
            .collect()
    }

    /// The socket address as `ip:port` (`[::1]:N` for IPv6).
    pub fn addr(&self) -> String {
        if self.addr.contains(':') {
            format!("[{}]:{}", self.addr, self.port)
        } else {
            format!("{}:{}", self.addr, self.port)
        }
    }

    /// The holder's private directory (`{dir}`, also its cwd).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the main process is still running (a zombie is not).
    pub fn is_alive(&self) -> bool {
        self.main.is_alive()
    }

    /// Whether the main process and every worker are still running.
    pub fn all_alive(&self) -> bool {
        self.main.is_alive() && self.workers.iter().all(Tracked::is_alive)
    }

    /// Pids (main, then workers) that are still running.
    pub fn alive_pids(&self) -> Vec<u32> {
        std::iter::once(&self.main)
            .chain(&self.workers)
            .filter(|t| t.is_alive())
            .map(|t| t.pid)
            .collect()
    }

    /// Waits until the main process has exited and been reaped by us, and
    /// returns its status; `None` if it is still running after `timeout`.
    pub fn wait_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        let guard = self.exit.status.lock().unwrap();
        let (guard, _) = self
            .exit
            .cond
            .wait_timeout_while(guard, timeout, |s| s.is_none())
            .unwrap();
        *guard
    }

    /// Waits until the main process and every worker are gone; returns the
    /// pids still running after `timeout` (empty when all are gone).
    pub fn wait_all_gone(&self, timeout: Duration) -> Vec<u32> {
        let deadline = Instant::now() + timeout;
        loop {
            let alive = self.alive_pids();
            if alive.is_empty() || Instant::now() >= deadline {
                return alive;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether this holder's port can be bound again on its address and
    /// protocol (with SO_REUSEADDR for TCP, as std does, like a restarting
    /// server would).
    pub fn port_is_bindable(&self) -> bool {
        port_is_bindable(&self.addr, self.port, self.proto)
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        for w in &self.workers {
            w.kill();
        }
        self.main.kill();
        if let Some(reaper) = self.reaper.take() {
            let _ = reaper.join();
        }
    }
}

/// Whether `addr:port` can be bound right now.
pub fn port_is_bindable(addr: &str, port: u16, proto: Proto) -> bool {
    match proto {
        Proto::Tcp => TcpListener::bind((addr, port)).is_ok(),
        Proto::Udp => UdpSocket::bind((addr, port)).is_ok(),
    }
}

/// A TCP port on 127.0.0.1 that nothing holds, reserved for the whole test
/// without a race: a helper process keeps a socket *bound* to it (with
/// SO_REUSEADDR) but never listens. Only a listening socket holds a
/// TCP port, and portguard's SO_REUSEADDR bind probe succeeds next to it, while
/// the kernel will not give the port to anybody's bind(0) meanwhile (unlike a
/// listener that is bound, read and dropped, whose port can be reused by a
/// parallel test before portguard looks at it).
pub fn reserved_free_port() -> Holder {
    Holder::tcp("127.0.0.1").bound_only().spawn()
}

// ---------------------------------------------------------------------------
// Running portguard
// ---------------------------------------------------------------------------

/// A fresh, hermetic place to run portguard: its own cwd (`work/`), `HOME`
/// and `XDG_CONFIG_HOME`, and no `PORTGUARD_POLICY`.
#[derive(Debug)]
pub struct Sandbox {
    dir: tempfile::TempDir,
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox::new()
    }
}

impl Sandbox {
    /// Creates the directories.
    pub fn new() -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("pg-sandbox-")
            .tempdir()
            .expect("sandbox dir");
        for sub in ["work", "home", "xdg"] {
            fs::create_dir(dir.path().join(sub)).expect("sandbox subdir");
        }
        Sandbox { dir }
    }

    /// portguard's cwd.
    pub fn work_dir(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// portguard's `$XDG_CONFIG_HOME`.
    pub fn xdg_dir(&self) -> PathBuf {
        self.dir.path().join("xdg")
    }

    /// portguard's `$HOME`.
    pub fn home_dir(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// Writes `contents` to `rel` (relative to the sandbox root), creating
    /// parent directories, and returns the absolute path.
    pub fn write(&self, rel: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("sandbox parent dir");
        }
        fs::write(&path, contents).expect("sandbox file");
        path
    }

    /// Writes a policy file outside portguard's cwd and returns its path as a
    /// string for `--policy`.
    pub fn policy(&self, toml: &str) -> String {
        let path = self.write("policies/policy.toml", toml);
        path.to_str().expect("UTF-8 path").to_owned()
    }

    /// A `portguard` command with the hermetic environment.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(PORTGUARD);
        cmd.current_dir(self.work_dir())
            .env_remove("PORTGUARD_POLICY")
            .env_remove("HEADROOM_WORKSPACE_DIR")
            .env("HOME", self.home_dir())
            .env("XDG_CONFIG_HOME", self.xdg_dir())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `portguard ARGS...` and waits for it (at most [`RUN_TIMEOUT`]).
    pub fn run<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut cmd = self.command();
        let args: Vec<String> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        cmd.args(&args);
        self.run_command(cmd, args)
    }

    /// Runs a prepared [`Sandbox::command`]; `args` is only for messages.
    pub fn run_command(&self, mut cmd: Command, args: Vec<String>) -> Run {
        // Output goes to files: no pipe can fill up, no reader threads.
        let out_path = self.dir.path().join("stdout.txt");
        let err_path = self.dir.path().join("stderr.txt");
        cmd.stdout(fs::File::create(&out_path).expect("stdout file"))
            .stderr(fs::File::create(&err_path).expect("stderr file"));
        let started = Instant::now();
        let mut child = cmd.spawn().expect("start portguard");
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for portguard") {
                break status;
            }
            if started.elapsed() > RUN_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                panic!("portguard {args:?} did not finish within {RUN_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let elapsed = started.elapsed();
        let read = |p: &Path| {
            let mut s = String::new();
            let _ = fs::File::open(p).and_then(|mut f| f.read_to_string(&mut s));
            s
        };
        Run {
            args,
            code: status.code(),
            stdout: read(&out_path),
            stderr: read(&err_path),
            elapsed,
        }
    }
}

/// Runs `portguard ARGS...` in a fresh [`Sandbox`].
pub fn portguard<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    Sandbox::new().run(args)
}

/// The result of one portguard run.
#[derive(Debug)]
pub struct Run {
    /// Arguments it was given.
    pub args: Vec<String>,
    /// Exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Everything it printed on stdout.
    pub stdout: String,
    /// Everything it printed on stderr.
    pub stderr: String,
    /// Wall-clock time of the run.
    pub elapsed: Duration,
}

impl Run {
    /// Everything needed to understand a failure.
    pub fn describe(&self) -> String {
        format!(
            "portguard {:?}\nexit: {:?} after {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.args, self.code, self.elapsed, self.stdout, self.stderr
        )
    }

    /// Asserts the exit code.
    #[track_caller]
    pub fn assert_exit(&self, code: i32) -> &Run {
        assert_eq!(
            self.code,
            Some(code),
            "unexpected exit code\n{}",
            self.describe()
        );
        self
    }

    /// stdout and stderr together (human output may use either).
    pub fn combined(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// stdout parsed as the JSON document of `--format json`.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("stdout is not one JSON document ({e})\n{}", self.describe())
        })
    }

    /// The `ports[]` entry for `port`.
    #[track_caller]
    pub fn port(&self, port: u16) -> Value {
        let doc = self.json();
        let ports = doc["ports"]
            .as_array()
            .unwrap_or_else(|| panic!("JSON has no `ports` array\n{}", self.describe()));
        ports
            .iter()
            .find(|p| p["port"].as_u64() == Some(u64::from(port)))
            .cloned()
            .unwrap_or_else(|| panic!("no entry for port {port}\n{}", self.describe()))
    }
}

// ---------------------------------------------------------------------------
// Reading the JSON report
// ---------------------------------------------------------------------------

/// Pids listed in a port entry's `holders`.
pub fn holder_pids(entry: &Value) -> Vec<u32> {
    let mut pids: Vec<u32> = entry["holders"]
        .as_array()
        .map(|hs| {
            hs.iter()
                .filter_map(|h| h["pid"].as_u64())
                .map(|p| p as u32)
                .collect()
        })
        .unwrap_or_default();
    pids.sort_unstable();
    pids
}

/// `(pid, signal)` of every `signal` step, in order.
pub fn signals(entry: &Value) -> Vec<(u32, String)> {
    steps(entry)
        .iter()
        .filter(|s| s["event"] == "signal")
        .map(|s| {
            (
                s["pid"].as_u64().unwrap_or(0) as u32,
                s["signal"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// The `event` names of the steps, in order.
pub fn events(entry: &Value) -> Vec<String> {
    steps(entry)
        .iter()
        .map(|s| s["event"].as_str().unwrap_or("").to_owned())
        .collect()
}

fn steps(entry: &Value) -> Vec<Value> {
    entry["steps"].as_array().cloned().unwrap_or_default()
}

/// A policy (TOML) with one rule that applies only to the suite's own holder
/// script, followed by `settings` (more `key = value` lines of that rule).
pub fn policy_for_test_holders(action: &str, settings: &str) -> String {
    format!(
        "name = \"e2e-{action}\"\n\
         description = \"portguard end-to-end test policy\"\n\
         \n\
         [[rule]]\n\
         name = \"test-holder\"\n\
         match.cmdline = '{HOLDER_MARK}'\n\
         action = \"{action}\"\n\
         {settings}\n"
    )
}
