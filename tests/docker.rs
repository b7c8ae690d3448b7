//! The Docker API client against a real dockerd (issue 11): a busybox httpd
//! container publishes a port, its docker-proxy is found in /proc, its argv
//! leads to the container, and stopping the container frees the port.
//!
//! Needs a daemon at `$DOCKER_HOST` (or /var/run/docker.sock) and the image
//! `$PORTGUARD_TEST_DOCKER_IMAGE` (default `portguard-test/busybox:latest`);
//! `scripts/ci-docker.sh start` provides both. Without them each test says
//! that it skips and passes, except under `CI=true`, where it fails.
//!
//! Every container is named `portguard-test-<pid>-<n>` and removed by name
//! when its guard drops, also when the test panics.

use std::net::{IpAddr, TcpListener};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use portguard::docker::{parse_docker_proxy_argv, Client, DockerError, ProxyArgs};

const DEFAULT_IMAGE: &str = "portguard-test/busybox:latest";

/// The test image when Docker is usable; `None` (after saying so) when it is
/// not and this is not CI.
fn docker_image() -> Option<String> {
    static CHECK: OnceLock<Result<String, String>> = OnceLock::new();
    let check = CHECK.get_or_init(|| {
        let image = std::env::var("PORTGUARD_TEST_DOCKER_IMAGE")
            .ok()
            .filter(|i| !i.is_empty())
            .unwrap_or_else(|| DEFAULT_IMAGE.to_string());
        let version = docker_timed(&["version", "--format", "{{.Server.Version}}"], 20)
            .map_err(|e| format!("cannot run the docker CLI: {e}"))?;
        if !version.status.success() {
            return Err(format!(
                "no Docker daemon answers (DOCKER_HOST={:?}): {}",
                std::env::var("DOCKER_HOST").unwrap_or_default(),
                String::from_utf8_lossy(&version.stderr).trim()
            ));
        }
        let inspect = docker_timed(&["image", "inspect", &image], 20)
            .map_err(|e| format!("cannot run the docker CLI: {e}"))?;
        if !inspect.status.success() {
            return Err(format!(
                "the image {image} is missing (scripts/ci-docker.sh image builds it)"
            ));
        }
        Ok(image)
    });
    match check {
        Ok(image) => Some(image.clone()),
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("Docker is required under CI=true: {why}")
        }
        Err(why) => {
            eprintln!("skipped: {why}");
            None
        }
    }
}

/// Runs the docker CLI, killing it after `secs` seconds.
fn docker_timed(args: &[&str], secs: u64) -> std::io::Result<Output> {
    let mut child = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(secs);
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output()
}

fn docker(args: &[&str]) -> Output {
    docker_timed(args, 60).expect("run docker")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A busybox httpd container publishing 127.0.0.1:PORT -> 80; removed on drop.
struct Container {
    name: String,
    id: String,
    port: u16,
}

impl Container {
    fn start(image: &str, labels: &[&str]) -> Container {
        static N: AtomicUsize = AtomicUsize::new(0);
        let mut last = String::new();
        // The port comes from the kernel and is released before docker
        // binds it: another process may take it in between, so retry.
        for _ in 0..5 {
            let port = {
                let probe = TcpListener::bind("127.0.0.1:0").unwrap();
                probe.local_addr().unwrap().port()
            };
            let n = N.fetch_add(1, Ordering::SeqCst);
            let mut container = Container {
                name: format!("portguard-test-{}-{n}", std::process::id()),
                id: String::new(),
                port,
            };
            let publish = format!("127.0.0.1:{port}:80");
            let mut args = vec![
                "run",
                "-d",
                "--init",
                "--name",
                &container.name,
                "-p",
                &publish,
            ];
            for label in labels {
                args.extend(["--label", label]);
            }
            args.extend([image, "httpd", "-f", "-p", "80"]);
            let out = docker(&args);
            if out.status.success() {
                container.id = stdout(&out);
                return container;
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            if !(last.contains("already allocated") || last.contains("address already in use")) {
                panic!("docker run failed: {last}");
            }
        }
        panic!("docker run kept losing the port race: {last}");
    }

    fn running(&self) -> String {
        stdout(&docker(&[
            "inspect",
            "-f",
            "{{.State.Running}}",
            &self.name,
        ]))
    }

    fn ip(&self) -> IpAddr {
        let out = docker(&[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            &self.name,
        ]);
        stdout(&out).parse().expect("container address")
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker_timed(&["rm", "-f", &self.name], 60);
    }
}

/// The argv of every process whose /proc cmdline is readable.
fn proc_argvs() -> Vec<(u32, Vec<String>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let argv: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        out.push((pid, argv));
    }
    out
}

/// The docker-proxy forwarding host port `port`: its pid and parsed argv.
fn docker_proxy(port: u16) -> (u32, ProxyArgs) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found = proc_argvs().into_iter().find_map(|(pid, argv)| {
            parse_docker_proxy_argv(&argv)
                .filter(|p| p.host_port == port)
                .map(|p| (pid, p))
        });
        if let Some(found) = found {
            return found;
        }
        assert!(Instant::now() < deadline, "no docker-proxy for port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn client() -> Client {
    Client::from_env().expect("DOCKER_HOST")
}

#[test]
fn a_docker_proxy_argv_leads_to_its_container() {
    let Some(image) = docker_image() else { return };
    let c = Container::start(
        &image,
        &[
            "com.docker.compose.project=pgproj",
            "com.docker.compose.service=web",
        ],
    );
    let (_, proxy) = docker_proxy(c.port);
    assert_eq!(proxy.proto, "tcp");
    assert_eq!(proxy.host_ip, IpAddr::from([127, 0, 0, 1]));
    assert_eq!(proxy.container_port, 80);
    assert_eq!(proxy.container_ip, c.ip());

    let client = client();
    let found = client.find_container(&proxy).unwrap();
    assert_eq!(
        found,
        Some(portguard::docker::Container {
            id: c.id.clone(),
            name: c.name.clone(),
            image: image.clone(),
            compose_project: Some("pgproj".into()),
            compose_service: Some("web".into()),
        })
    );
    assert!(client.is_running(&c.id).unwrap());

    // Only that exact mapping matches.
    let mut elsewhere = proxy.clone();
    elsewhere.container_ip = IpAddr::from([172, 31, 255, 254]);
    assert_eq!(client.find_container(&elsewhere).unwrap(), None);
    let mut other_port = proxy.clone();
    other_port.host_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    assert_eq!(client.find_container(&other_port).unwrap(), None);
    let mut udp = proxy.clone();
    udp.proto = "udp".into();
    assert_eq!(client.find_container(&udp).unwrap(), None);
}

#[test]
fn stopping_the_container_frees_its_port_and_ends_its_proxy() {
    let Some(image) = docker_image() else { return };
    let c = Container::start(&image, &[]);
    let (proxy_pid, proxy) = docker_proxy(c.port);
    let client = client();
    let found = client
        .find_container(&proxy)
        .unwrap()
        .expect("the container");
    assert_eq!(found.name, c.name);
    assert_eq!(found.compose_project, None);
    assert_eq!(found.compose_service, None);

    let grace = Duration::from_secs(10);
    let started = Instant::now();
    client.stop(&found.id, grace).unwrap();
    let took = started.elapsed();
    // --init forwards SIGTERM to httpd: no waiting out the grace period.
    assert!(took < Duration::from_secs(8), "stop took {took:?}");

    assert_eq!(c.running(), "false");
    assert!(!client.is_running(&found.id).unwrap());
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::path::Path::new(&format!("/proc/{proxy_pid}")).exists() {
        assert!(
            Instant::now() < deadline,
            "docker-proxy {proxy_pid} outlived its container"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    TcpListener::bind(("127.0.0.1", c.port)).expect("the port is free");
    // Stopping a stopped container is success (HTTP 304).
    client.stop(&found.id, grace).unwrap();
}

#[test]
fn an_unreachable_daemon_is_a_typed_error_at_once() {
    let client = Client::from_docker_host(Some("unix:///nonexistent")).unwrap();
    let proxy = parse_docker_proxy_argv(
        &"/usr/sbin/docker-proxy -proto tcp -host-ip 127.0.0.1 -host-port 45555 -container-ip 172.17.0.2 -container-port 80"
            .split(' ')
            .map(String::from)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let started = Instant::now();
    let err = client.find_container(&proxy).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(matches!(err, DockerError::Unreachable { .. }), "{err:?}");
    let err = client.stop("abc", Duration::from_secs(1)).unwrap_err();
    assert!(matches!(err, DockerError::Unreachable { .. }), "{err:?}");
}

/// Not a check: prints the time to find and stop a container through the
/// client against `docker stop` alone (medians of 5). Run with
/// `cargo test --release --test docker -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check"]
fn timing_find_and_stop_against_docker_stop() {
    let Some(image) = docker_image() else { return };
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (mut scans, mut finds, mut stops, mut clis) = (vec![], vec![], vec![], vec![]);
    for _ in 0..5 {
        let c = Container::start(&image, &[]);
        let started = Instant::now();
        let (_, proxy) = docker_proxy(c.port);
        scans.push(started.elapsed());
        let client = client(); // a fresh client negotiates the version again
        let started = Instant::now();
        let found = client.find_container(&proxy).unwrap().expect("container");
        finds.push(started.elapsed());
        let started = Instant::now();
        client.stop(&found.id, Duration::from_secs(10)).unwrap();
        stops.push(started.elapsed());

        let other = Container::start(&image, &[]);
        let started = Instant::now();
        assert!(docker(&["stop", "-t", "10", &other.name]).status.success());
        clis.push(started.elapsed());
    }
    eprintln!("/proc scan for docker-proxy: median {:?}", median(scans));
    eprintln!(
        "find_container (ping + list + inspect): median {:?}",
        median(finds)
    );
    eprintln!("stop through the API: median {:?}", median(stops));
    eprintln!("docker stop -t 10 (CLI): median {:?}", median(clis));
}

// ---------------------------------------------------------------------------
// portguard itself against the real daemon
// ---------------------------------------------------------------------------

const PORTGUARD: &str = env!("CARGO_BIN_EXE_portguard");

/// Runs portguard (hermetic HOME, no policy lookup) with extra environment.
fn portguard(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(PORTGUARD);
    cmd.args(args)
        .current_dir(home.path())
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path())
        .env_remove("PORTGUARD_POLICY")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run portguard");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// A policy that terminates whatever matches `criteria` (no user criterion
/// on purpose: as root, docker-proxy is "yours").
fn policy(dir: &std::path::Path, criteria: &str) -> String {
    let path = dir.join("p.toml");
    std::fs::write(
        &path,
        format!(
            "[[rule]]\nname = \"stop-it\"\n{criteria}\naction = \"terminate\"\ngrace = \"2s\"\n"
        ),
    )
    .unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn who_and_explain_name_the_container_and_plan_a_stop() {
    let Some(image) = docker_image() else { return };
    let c = Container::start(&image, &["com.docker.compose.project=shop"]);
    let (proxy_pid, _) = docker_proxy(c.port);
    let port = c.port.to_string();
    let (code, out, err) = portguard(&["who", &port, "--format", "json"], &[]);
    assert_eq!(code, 0, "{err}");
    let doc = json(&out);
    let holder = &doc["ports"][0]["holders"][0];
    assert_eq!(holder["pid"], proxy_pid, "{doc:#}");
    assert_eq!(holder["container"]["name"], c.name.as_str(), "{doc:#}");
    assert_eq!(holder["container"]["id"], c.id.as_str());
    assert_eq!(holder["container"]["compose_project"], "shop");
    let (_, human, _) = portguard(&["who", &port], &[]);
    assert!(
        human.contains(&format!(
            "container {} (image {image}, id {})",
            c.name,
            &c.id[..12]
        )),
        "{human}"
    );

    let dir = tempfile::tempdir().unwrap();
    let by_name = policy(dir.path(), &format!("match.container = '^{}$'", c.name));
    let (code, out, _) = portguard(&["resolve", &port, "--policy", &by_name, "--explain"], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("would stop container {}", c.name)),
        "{out}"
    );
    assert_eq!(c.running(), "true", "--explain acts on nothing");
}

#[test]
fn resolve_stops_the_container_and_never_signals_docker_proxy() {
    let Some(image) = docker_image() else { return };
    let dir = tempfile::tempdir().unwrap();
    // By image, and by docker-proxy's own command line: either way the
    // container is stopped and docker-proxy is never signalled.
    for criteria in [
        format!("match.image = '^{}$'", regex_escape(&image)),
        "match.cmdline = '^\\S*docker-proxy\\s'".to_string(),
    ] {
        let c = Container::start(&image, &[]);
        let (proxy_pid, _) = docker_proxy(c.port);
        let port = c.port.to_string();
        let p = policy(dir.path(), &criteria);
        let started = Instant::now();
        let (code, out, err) =
            portguard(&["resolve", &port, "--policy", &p, "--format", "json"], &[]);
        let took = started.elapsed();
        let doc = json(&out);
        assert_eq!(code, 0, "{criteria}: {err}\n{doc:#}");
        let entry = &doc["ports"][0];
        let events: Vec<&str> = entry["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["event"].as_str())
            .collect();
        assert!(events.contains(&"stop_container"), "{doc:#}");
        assert!(
            !events.contains(&"signal"),
            "docker-proxy pid {proxy_pid} was signalled:\n{doc:#}"
        );
        assert_eq!(c.running(), "false");
        TcpListener::bind(("127.0.0.1", c.port)).expect("the port is free");
        eprintln!("portguard freed a container's port in {took:?}");
    }
}

#[test]
fn an_unreachable_api_refuses_with_the_docker_stop_command() {
    let Some(image) = docker_image() else { return };
    let c = Container::start(&image, &[]);
    let (proxy_pid, _) = docker_proxy(c.port);
    let dir = tempfile::tempdir().unwrap();
    let p = policy(dir.path(), "match.cmdline = 'docker-proxy'");
    let port = c.port.to_string();
    let dead = [("DOCKER_HOST", "unix:///nonexistent/docker.sock")];
    let (code, out, _) = portguard(&["resolve", &port, "--policy", &p, "--explain"], &dead);
    assert_eq!(code, 4, "the plan already refuses\n{out}");
    let (code, out, err) = portguard(
        &["resolve", &port, "--policy", &p, "--format", "json"],
        &dead,
    );
    assert_eq!(code, 4, "{err}\n{out}");
    let doc = json(&out);
    let message = doc["ports"][0]["message"].as_str().unwrap_or("");
    assert!(message.contains("docker stop"), "{message}");
    assert!(message.contains("unreachable"), "{message}");
    assert!(
        doc["ports"][0]["steps"].as_array().unwrap().is_empty(),
        "{doc:#}"
    );
    assert_eq!(c.running(), "true");
    assert!(std::path::Path::new(&format!("/proc/{proxy_pid}")).exists());
}

/// A non-root member of the docker group cannot read docker-proxy's fds:
/// the socket shows as root's, unseen; its world-readable argv and the API
/// still name the container, and stopping it is the user's own right.
#[test]
fn a_docker_group_member_stops_a_container_through_the_api() {
    let Some(image) = docker_image() else { return };
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root to create the docker-group user");
        return;
    }
    let Some(user) = DockerUser::create() else {
        return;
    };
    let c = Container::start(&image, &[]);
    let port = c.port.to_string();
    let exe = binary_for(&user);
    let run = |args: &[&str]| {
        let out = Command::new("setpriv")
            .args([
                &format!("--reuid={}", user.name),
                &format!("--regid={}", user.name),
                "--init-groups",
                "--",
            ])
            .arg(&exe)
            .args(args)
            .current_dir("/")
            .env("HOME", "/nonexistent")
            .env("XDG_CONFIG_HOME", "/nonexistent")
            .env_remove("PORTGUARD_POLICY")
            .stdin(Stdio::null())
            .output()
            .expect("setpriv");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = run(&["who", &port, "--format", "json"]);
    assert_eq!(code, 0, "{out}");
    let doc = json(&out);
    assert_eq!(
        doc["ports"][0]["holders"][0]["container"]["name"],
        c.name.as_str(),
        "{doc:#}"
    );
    let (code, out) = run(&["resolve", &port, "--policy", "mine", "--format", "json"]);
    assert_eq!(code, 4, "mine refuses a container, with docker stop\n{out}");
    assert!(json(&out)["ports"][0]["message"]
        .as_str()
        .unwrap_or("")
        .contains("docker stop"));
    let policy_dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        policy_dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let p = policy(
        policy_dir.path(),
        &format!("match.container = '^{}$'", c.name),
    );
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let (code, out) = run(&["resolve", &port, "--policy", &p, "--format", "json"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(c.running(), "false");
}

/// A throwaway user in the docker group; removed on drop.
struct DockerUser {
    name: String,
}

impl DockerUser {
    fn create() -> Option<DockerUser> {
        let name = format!("pgdock{}", std::process::id() % 100_000);
        let ok = Command::new("useradd")
            .args([
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                "-G",
                "docker",
                &name,
            ])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("skipped: cannot create a user in the docker group (useradd)");
            return None;
        }
        Some(DockerUser { name })
    }
}

impl Drop for DockerUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).status();
    }
}

/// A copy of the binary the user can execute (the checkout may sit where
/// others cannot enter), and that can reach the socket's directory.
fn binary_for(_user: &DockerUser) -> std::path::PathBuf {
    static COPY: OnceLock<(tempfile::TempDir, std::path::PathBuf)> = OnceLock::new();
    COPY.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let bin = dir.path().join("portguard");
        std::fs::copy(PORTGUARD, &bin).unwrap();
        (dir, bin)
    })
    .1
    .clone()
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .map(|c| {
            if "\\.+*?()|[]{}^$#&-~".contains(c) {
                format!("\\{c}")
            } else {
                c.to_string()
            }
        })
        .collect()
}
