//! The client against recorded daemon answers, served by a fake daemon on a
//! unix socket in a temporary directory (one thread per connection).

use super::*;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};

/// What the fake daemon does on one connection, after reading the request.
enum Reply {
    /// Writes these bytes, then closes.
    Send(Vec<u8>),
    /// Writes these bytes, then holds the connection open this long.
    SendAndHold(Vec<u8>, Duration),
    /// Writes these bytes one at a time, one every interval, then closes.
    Dribble(Vec<u8>, Duration),
    /// Reads the request and answers nothing, for this long.
    Hang(Duration),
}

struct FakeDaemon {
    _dir: tempfile::TempDir,
    path: PathBuf,
    requests: mpsc::Receiver<String>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl FakeDaemon {
    /// Serves every connection with `handler(request line)`.
    fn start(handler: impl Fn(&str) -> Reply + Send + 'static) -> FakeDaemon {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let (tx, requests) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let accept = thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                let head = read_head(&mut conn);
                let line = head.lines().next().unwrap_or("").to_string();
                let _ = tx.send(head);
                let reply = handler(&line);
                thread::spawn(move || serve(conn, reply));
            }
        });
        FakeDaemon {
            _dir: dir,
            path,
            requests,
            stop,
            accept: Some(accept),
        }
    }

    /// A client whose API version is already known (no `_ping`).
    fn client(&self) -> Client {
        let client = Client::with_socket(&self.path);
        client.api.set("/v1.41".into()).unwrap();
        client
    }

    /// The request heads received so far.
    fn received(&self) -> Vec<String> {
        self.requests.try_iter().collect()
    }
}

impl Drop for FakeDaemon {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = UnixStream::connect(&self.path); // wakes accept()
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn read_head(conn: &mut UnixStream) -> String {
    conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

fn serve(mut conn: UnixStream, reply: Reply) {
    match reply {
        Reply::Send(bytes) => {
            let _ = conn.write_all(&bytes);
        }
        Reply::SendAndHold(bytes, hold) => {
            let _ = conn.write_all(&bytes);
            thread::sleep(hold);
        }
        Reply::Dribble(bytes, every) => {
            for b in bytes {
                if conn.write_all(&[b]).is_err() {
                    return;
                }
                thread::sleep(every);
            }
        }
        Reply::Hang(hold) => thread::sleep(hold),
    }
}

/// An HTTP/1.1 answer with a Content-Length.
fn http(status: &str, headers: &[&str], body: &str) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\n");
    for h in headers {
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    out.into_bytes()
}

fn get(client: &Client, path: &str) -> Result<Response, DockerError> {
    client.call("GET", path, Instant::now() + client.timeout, client.timeout)
}

// --- framing ---

#[test]
fn content_length_body_is_read_without_waiting_for_the_close() {
    let daemon = FakeDaemon::start(|_| {
        let mut bytes = http("200 OK", &["Content-Type: application/json"], "[1,2]");
        bytes.extend_from_slice(b"garbage after the body");
        Reply::SendAndHold(bytes, Duration::from_secs(3))
    });
    let started = Instant::now();
    let response = get(&daemon.client(), "/v1.41/x").unwrap();
    assert!(started.elapsed() < Duration::from_secs(2), "waited for EOF");
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"[1,2]");
    assert_eq!(response.header("content-type"), Some("application/json"));
}

#[test]
fn the_request_is_http_1_1_with_connection_close() {
    let daemon = FakeDaemon::start(|_| Reply::Send(http("200 OK", &[], "{}")));
    get(&daemon.client(), "/v1.41/containers/json?filters=%7B%7D").unwrap();
    let head = daemon.received().remove(0);
    assert!(
        head.starts_with("GET /v1.41/containers/json?filters=%7B%7D HTTP/1.1\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nConnection: close\r\n"), "{head}");
    assert!(head.contains("\r\nHost: docker\r\n"), "{head}");
}

#[test]
fn chunked_body_is_decoded_across_writes_with_extensions_and_trailers() {
    let raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
               4\r\n[{\"a\r\n\
               6;ext=1\r\n\":1},{\r\n\
               A\r\n\"b\":22222}\r\n\
               1\r\n]\r\n\
               0\r\nX-Trailer: yes\r\n\r\n";
    // One byte at a time: every boundary falls mid-token somewhere.
    let daemon = FakeDaemon::start(move |_| {
        Reply::Dribble(raw.as_bytes().to_vec(), Duration::from_micros(200))
    });
    let response = get(&daemon.client(), "/v1.41/x").unwrap();
    assert_eq!(response.body, br#"[{"a":1},{"b":22222}]"#);
}

#[test]
fn chunked_body_does_not_wait_for_the_close() {
    let daemon = FakeDaemon::start(|_| {
        Reply::SendAndHold(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n".to_vec(),
            Duration::from_secs(3),
        )
    });
    let started = Instant::now();
    let response = get(&daemon.client(), "/v1.41/x").unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(response.body, b"{}");
}

#[test]
fn body_without_length_runs_to_the_close() {
    let daemon = FakeDaemon::start(|_| {
        Reply::Send(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{\"Running\":true}".to_vec())
    });
    let response = get(&daemon.client(), "/v1.41/x").unwrap();
    assert_eq!(response.body, br#"{"Running":true}"#);
}

#[test]
fn a_body_cut_short_is_malformed() {
    let daemon = FakeDaemon::start(|_| {
        Reply::Send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}".to_vec())
    });
    let err = get(&daemon.client(), "/v1.41/x").unwrap_err();
    assert!(matches!(err, DockerError::Malformed { .. }), "{err:?}");
}

#[test]
fn not_http_is_malformed() {
    let daemon = FakeDaemon::start(|_| Reply::Send(b"SSH-2.0-OpenSSH_9.2\r\n\r\n".to_vec()));
    let err = get(&daemon.client(), "/v1.41/x").unwrap_err();
    assert!(
        matches!(&err, DockerError::Malformed { reason, .. } if reason.contains("status line")),
        "{err:?}"
    );
}

#[test]
fn an_unsupported_transfer_encoding_is_malformed() {
    let daemon = FakeDaemon::start(|_| {
        Reply::Send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx".to_vec())
    });
    let err = get(&daemon.client(), "/v1.41/x").unwrap_err();
    assert!(matches!(err, DockerError::Malformed { .. }), "{err:?}");
}

// --- errors ---

#[test]
fn an_error_status_carries_dockers_message() {
    let daemon = FakeDaemon::start(|_| {
        Reply::Send(http(
            "404 Not Found",
            &["Content-Type: application/json"],
            r#"{"message":"No such container: nope"}"#,
        ))
    });
    let err = get(&daemon.client(), "/v1.41/containers/nope/json").unwrap_err();
    match &err {
        DockerError::Status {
            request,
            status,
            message,
        } => {
            assert_eq!(*status, 404);
            assert_eq!(message, "No such container: nope");
            assert_eq!(request, "GET /v1.41/containers/nope/json");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "Docker answered GET /v1.41/containers/nope/json with HTTP 404: No such container: nope"
    );
}

#[test]
fn an_error_status_without_json_shows_the_body() {
    let daemon =
        FakeDaemon::start(|_| Reply::Send(http("502 Bad Gateway", &[], "upstream gone\n")));
    let err = get(&daemon.client(), "/v1.41/x").unwrap_err();
    assert!(
        matches!(&err, DockerError::Status { status: 502, message, .. } if message == "upstream gone"),
        "{err:?}"
    );
}

#[test]
fn a_missing_socket_is_unreachable_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let client = Client::with_socket(dir.path().join("docker.sock"));
    let started = Instant::now();
    let err = get(&client, "/_ping").unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(matches!(err, DockerError::Unreachable { .. }), "{err:?}");
    assert!(err
        .to_string()
        .starts_with("the Docker daemon is unreachable at "));
}

#[test]
fn a_socket_nobody_listens_on_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("docker.sock");
    drop(UnixListener::bind(&path).unwrap()); // the file stays, refusing
    let err = get(&Client::with_socket(&path), "/_ping").unwrap_err();
    match err {
        DockerError::Unreachable { source, .. } => {
            assert_eq!(source.kind(), io::ErrorKind::ConnectionRefused)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn eacces_on_connect_is_permission_denied() {
    // Root passes every permission check, so the mapping is checked directly.
    let err = into_error(
        Fail::Connect(io::Error::from(io::ErrorKind::PermissionDenied)),
        Path::new("/var/run/docker.sock"),
        "GET /_ping",
        DEFAULT_TIMEOUT,
    );
    assert!(
        matches!(err, DockerError::PermissionDenied { .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "permission denied on the Docker socket /var/run/docker.sock (is this user in the docker group?)"
    );
}

// --- limits ---

/// Asks `path` with a client whose deadline is `timeout`: the call must end
/// in a timeout, not before the deadline and well before `limit` (a daemon
/// that hangs or dribbles cannot hold portguard longer).
fn expect_timeout(client: &Client, path: &str, timeout: Duration, limit: Duration) -> DockerError {
    let client = client.clone().with_timeout(timeout);
    let started = Instant::now();
    let err = get(&client, path).unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, DockerError::Timeout { .. }), "{err:?}");
    assert!(took >= timeout && took < limit, "{took:?}");
    err
}

#[test]
fn a_daemon_that_never_answers_times_out() {
    let daemon = FakeDaemon::start(|_| Reply::Hang(Duration::from_secs(5)));
    let err = expect_timeout(
        &daemon.client(),
        "/v1.41/x",
        Duration::from_millis(300),
        Duration::from_secs(2),
    );
    assert_eq!(
        err.to_string(),
        format!(
            "the Docker daemon at {} did not answer GET /v1.41/x within 300ms",
            daemon.path.display()
        )
    );
}

#[test]
fn a_daemon_that_dribbles_hits_the_overall_deadline() {
    // Every read succeeds well within any per-read timeout; only an overall
    // deadline stops this (the whole answer would take ~2 s).
    let mut bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n".to_vec();
    bytes.extend(std::iter::repeat_n(b'x', 100));
    let daemon =
        FakeDaemon::start(move |_| Reply::Dribble(bytes.clone(), Duration::from_millis(15)));
    expect_timeout(
        &daemon.client(),
        "/v1.41/x",
        Duration::from_millis(400),
        Duration::from_millis(1200),
    );
}

#[test]
fn a_daemon_that_stopped_accepting_times_out_in_connect() {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("docker.sock");
    let addr = SocketAddrUnix::new(&path).unwrap();
    let listener = rustix::net::socket(AddressFamily::UNIX, SocketType::STREAM, None).unwrap();
    rustix::net::bind(&listener, &addr).unwrap();
    rustix::net::listen(&listener, 0).unwrap();
    // Fill the backlog: connects succeed until the queue is full.
    let mut queued = Vec::new();
    loop {
        let fd = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::NONBLOCK,
            None,
        )
        .unwrap();
        match rustix::net::connect(&fd, &addr) {
            Ok(()) => queued.push(fd),
            Err(rustix::io::Errno::AGAIN) => break,
            Err(e) => panic!("{e}"),
        }
        assert!(queued.len() < 1000, "the backlog never filled");
    }
    expect_timeout(
        &Client::with_socket(&path),
        "/_ping",
        Duration::from_millis(300),
        Duration::from_secs(2),
    );
}

#[test]
fn a_content_length_over_the_cap_is_refused_before_reading_it() {
    let daemon = FakeDaemon::start(|_| {
        Reply::SendAndHold(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                MAX_BODY_BYTES + 1
            )
            .into_bytes(),
            Duration::from_secs(3),
        )
    });
    let started = Instant::now();
    let err = get(&daemon.client(), "/v1.41/x").unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        matches!(
            err,
            DockerError::TooLarge {
                limit: MAX_BODY_BYTES,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_body_of_exactly_the_cap_is_read() {
    let body = "x".repeat(MAX_BODY_BYTES);
    let daemon = FakeDaemon::start(move |_| Reply::Send(http("200 OK", &[], &body)));
    let response = get(&daemon.client(), "/v1.41/x").unwrap();
    assert_eq!(response.body.len(), MAX_BODY_BYTES);
}

#[test]
fn a_chunked_body_over_the_cap_is_too_large() {
    let mut bytes = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..5 {
        bytes.extend_from_slice(b"100\r\n");
        bytes.extend(std::iter::repeat_n(b'x', 0x100));
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(b"0\r\n\r\n");
    let daemon = FakeDaemon::start(move |_| Reply::Send(bytes.clone()));
    let mut client = daemon.client();
    client.body_limit = 1024;
    let err = get(&client, "/v1.41/x").unwrap_err();
    assert!(
        matches!(err, DockerError::TooLarge { limit: 1024, .. }),
        "{err:?}"
    );
}

#[test]
fn a_huge_chunk_size_is_too_large_at_once() {
    let daemon = FakeDaemon::start(|_| {
        Reply::SendAndHold(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffff\r\n".to_vec(),
            Duration::from_secs(3),
        )
    });
    let started = Instant::now();
    let err = get(&daemon.client(), "/v1.41/x").unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(matches!(err, DockerError::TooLarge { .. }), "{err:?}");
}

#[test]
fn a_body_to_the_close_over_the_cap_is_too_large() {
    let mut bytes = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
    bytes.extend(std::iter::repeat_n(b'x', 64 * 1024));
    let daemon = FakeDaemon::start(move |_| Reply::Send(bytes.clone()));
    let mut client = daemon.client();
    client.body_limit = 1024;
    let err = get(&client, "/v1.41/x").unwrap_err();
    assert!(
        matches!(err, DockerError::TooLarge { limit: 1024, .. }),
        "{err:?}"
    );
}

#[test]
fn headers_over_the_cap_are_too_large() {
    let mut bytes = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..MAX_HEADER_BYTES / 20 + 1 {
        bytes.extend_from_slice(format!("X-Filler-{i:06}: aaaa\r\n").as_bytes());
    }
    bytes.extend_from_slice(b"\r\n");
    let daemon = FakeDaemon::start(move |_| Reply::Send(bytes.clone()));
    let err = get(&daemon.client(), "/v1.41/x").unwrap_err();
    assert!(
        matches!(
            err,
            DockerError::TooLarge {
                limit: MAX_HEADER_BYTES,
                ..
            }
        ),
        "{err:?}"
    );
}

// --- DOCKER_HOST and version ---

#[test]
fn docker_host_selects_the_socket() {
    let socket = |v: Option<&str>| Client::from_docker_host(v).map(|c| c.socket().to_path_buf());
    assert_eq!(socket(None).unwrap(), Path::new(DEFAULT_SOCKET));
    assert_eq!(socket(Some("")).unwrap(), Path::new(DEFAULT_SOCKET));
    assert_eq!(
        socket(Some("unix:///run/user/1000/docker.sock")).unwrap(),
        Path::new("/run/user/1000/docker.sock")
    );
    for other in [
        "tcp://127.0.0.1:2375",
        "ssh://me@host",
        "npipe:////./pipe/docker_engine",
        "/var/run/docker.sock",
        "unix://",
    ] {
        let err = socket(Some(other)).unwrap_err();
        assert!(
            matches!(err, DockerError::UnsupportedHost { .. }),
            "{other}: {err:?}"
        );
        assert!(
            err.to_string().contains("only unix sockets are supported"),
            "{err}"
        );
    }
}

#[test]
fn the_api_version_is_the_daemons_capped_at_the_newest_known() {
    assert_eq!(negotiate(Some("1.41")), "/v1.41");
    assert_eq!(negotiate(Some("1.24")), "/v1.24");
    assert_eq!(negotiate(Some("1.52")), "/v1.51");
    assert_eq!(negotiate(Some("2.0")), "/v1.51");
    assert_eq!(negotiate(Some("garbage")), "");
    assert_eq!(negotiate(None), "");
}

#[test]
fn the_version_is_asked_once_and_pins_later_paths() {
    let daemon = FakeDaemon::start(|line| {
        if line.starts_with("GET /_ping ") {
            Reply::Send(http("200 OK", &["Api-Version: 1.43"], "OK"))
        } else {
            Reply::Send(http("200 OK", &[], r#"{"State":{"Running":true}}"#))
        }
    });
    let client = Client::with_socket(&daemon.path);
    assert!(client.is_running("abc").unwrap());
    assert!(client.is_running("abc").unwrap());
    let lines: Vec<String> = daemon
        .received()
        .iter()
        .map(|h| h.lines().next().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        lines,
        [
            "GET /_ping HTTP/1.1",
            "GET /v1.43/containers/abc/json HTTP/1.1",
            "GET /v1.43/containers/abc/json HTTP/1.1",
        ]
    );
}

// --- docker-proxy argv ---

fn argv(s: &str) -> Vec<String> {
    s.split(' ').map(String::from).collect()
}

#[test]
fn debian_docker_proxy_argv_is_parsed() {
    let args = parse_docker_proxy_argv(&argv(
        "/usr/sbin/docker-proxy -proto tcp -host-ip 127.0.0.1 -host-port 45555 -container-ip 172.17.0.2 -container-port 80",
    ))
    .unwrap();
    assert_eq!(
        args,
        ProxyArgs {
            proto: "tcp".into(),
            host_ip: "127.0.0.1".parse().unwrap(),
            host_port: 45555,
            container_ip: "172.17.0.2".parse().unwrap(),
            container_port: 80,
        }
    );
    assert_eq!(args.to_string(), "tcp 127.0.0.1:45555 -> 172.17.0.2:80");
}

#[test]
fn newer_and_hand_written_forms_are_parsed() {
    let cases = [
        // Docker 25+: the listening socket comes from dockerd.
        "/usr/bin/docker-proxy -proto tcp -host-ip :: -host-port 5432 -container-ip 172.18.0.3 -container-port 5432 -use-listen-fd",
        "docker-proxy --proto=tcp --host-ip=:: --host-port=5432 --container-ip=172.18.0.3 --container-port=5432",
        "docker-proxy -use-listen-fd=true -host-ip=:: -host-port 5432 -container-ip [172.18.0.3] -container-port=5432",
        // Unknown flags (with and without a value) are skipped; tcp is the default.
        "docker-proxy -future-flag x -other-bool -host-ip :: -host-port 5432 -container-ip 172.18.0.3 -container-port 5432",
    ];
    for case in cases {
        let args = parse_docker_proxy_argv(&argv(case)).unwrap_or_else(|| panic!("{case}"));
        assert_eq!(args.proto, "tcp", "{case}");
        assert_eq!(args.host_ip, "::".parse::<IpAddr>().unwrap(), "{case}");
        assert_eq!(args.host_port, 5432, "{case}");
        assert_eq!(
            args.container_ip,
            "172.18.0.3".parse::<IpAddr>().unwrap(),
            "{case}"
        );
        assert_eq!(args.container_port, 5432, "{case}");
    }
    let udp = parse_docker_proxy_argv(&argv(
        "docker-proxy -proto UDP -host-port 53 -container-ip fd00::2 -container-port 5353",
    ))
    .unwrap();
    assert_eq!(udp.proto, "udp");
    assert!(udp.host_ip.is_unspecified());
    assert_eq!(udp.container_ip, "fd00::2".parse::<IpAddr>().unwrap());
    let sctp = parse_docker_proxy_argv(&argv(
        "docker-proxy -proto sctp -host-ip 10.0.0.1,10.0.0.2 -host-port 9 -container-ip 172.17.0.5,172.17.0.6 -container-port 9",
    ))
    .unwrap();
    assert_eq!(sctp.host_ip, "10.0.0.1".parse::<IpAddr>().unwrap());
    assert_eq!(sctp.container_ip, "172.17.0.5".parse::<IpAddr>().unwrap());
}

#[test]
fn other_processes_and_incomplete_argv_are_not_proxies() {
    let cases = [
        "",
        "python3 -proto tcp -host-ip 127.0.0.1 -host-port 1 -container-ip 172.17.0.2 -container-port 80",
        "/usr/sbin/docker-proxy-evil -host-port 1 -container-ip 172.17.0.2 -container-port 80",
        "docker-proxy -proto tcp -host-ip 127.0.0.1 -container-ip 172.17.0.2 -container-port 80",
        "docker-proxy -host-port 1 -container-port 80",
        "docker-proxy -host-port 1 -container-ip 172.17.0.2",
        "docker-proxy -host-port 0 -container-ip 172.17.0.2 -container-port 80",
        "docker-proxy -host-port 65536 -container-ip 172.17.0.2 -container-port 80",
        "docker-proxy -host-port -1 -container-ip 172.17.0.2 -container-port 80",
        "docker-proxy -host-port 1 -container-ip nonsense -container-port 80",
        "docker-proxy -host-port 1 -container-ip 172.17.0.2 -container-port",
        "docker-proxy -host-ip banana -host-port 1 -container-ip 172.17.0.2 -container-port 80",
        // Flags after the first non-flag are arguments, as in Go.
        "docker-proxy stray -host-port 1 -container-ip 172.17.0.2 -container-port 80",
    ];
    for case in cases {
        let v: Vec<String> = if case.is_empty() { vec![] } else { argv(case) };
        assert_eq!(parse_docker_proxy_argv(&v), None, "{case}");
    }
}

// --- finding a container ---

/// `GET /containers/json?filters={"publish":["45555/tcp"]}` as Docker 20.10
/// answered it, plus a second container on the same host port but another
/// address (IPv6 wildcard of a `-p 45555:80` would look like this).
const LISTED: &str = r#"[
 {"Id":"3c4df619739a018da4a6f206fbf355c7e0868d3ddb3cb6f575d3fbf8ee6286fe","Names":["/pgweb"],
  "Image":"sha256:138427eb902b","ImageID":"sha256:138427eb902bf56e","Command":"httpd -f -p 80",
  "Ports":[{"IP":"127.0.0.1","PrivatePort":80,"PublicPort":45555,"Type":"tcp"},
           {"PrivatePort":443,"Type":"tcp"}],
  "Labels":{"com.docker.compose.project":"shop"},"State":"running",
  "NetworkSettings":{"Networks":{"bridge":{"IPAddress":"172.17.0.2","GlobalIPv6Address":""}}}},
 {"Id":"99aa","Names":["/other"],"Image":"nginx","Ports":[{"IP":"127.0.0.2","PrivatePort":80,"PublicPort":45555,"Type":"tcp"}],
  "NetworkSettings":{"Networks":{"web":{"IPAddress":"172.18.0.4"}}}}
]"#;

const INSPECTED: &str = r#"{"Id":"3c4df619739a018da4a6f206fbf355c7e0868d3ddb3cb6f575d3fbf8ee6286fe",
 "Name":"/pgweb","State":{"Status":"running","Running":true},
 "Config":{"Image":"postgres:16","Labels":{"com.docker.compose.project":"shop","com.docker.compose.service":"db"}}}"#;

fn proxy(host_ip: &str, container_ip: &str) -> ProxyArgs {
    ProxyArgs {
        proto: "tcp".into(),
        host_ip: host_ip.parse().unwrap(),
        host_port: 45555,
        container_ip: container_ip.parse().unwrap(),
        container_port: 80,
    }
}

fn listed() -> Vec<ListedContainer> {
    serde_json::from_str(LISTED).unwrap()
}

#[test]
fn a_container_matches_on_published_port_address_and_network_ip() {
    let all = listed();
    let matching = |p: &ProxyArgs| -> Vec<&str> {
        all.iter()
            .filter(|c| c.forwards(p))
            .map(|c| c.id.as_str())
            .collect()
    };
    assert_eq!(matching(&proxy("127.0.0.1", "172.17.0.2")).len(), 1);
    assert_eq!(matching(&proxy("127.0.0.2", "172.18.0.4")), ["99aa"]);
    // A wildcard proxy does not compare the host address.
    assert_eq!(matching(&proxy("0.0.0.0", "172.17.0.2")).len(), 1);
    // Wrong container address, host address, port or protocol: nothing.
    assert!(matching(&proxy("127.0.0.1", "172.17.0.9")).is_empty());
    assert!(matching(&proxy("127.0.0.2", "172.17.0.2")).is_empty());
    let mut other_port = proxy("127.0.0.1", "172.17.0.2");
    other_port.container_port = 443;
    assert!(matching(&other_port).is_empty());
    let mut udp = proxy("127.0.0.1", "172.17.0.2");
    udp.proto = "udp".into();
    assert!(matching(&udp).is_empty());
}

fn fake_docker(listed: &'static str, inspected: &'static str) -> FakeDaemon {
    FakeDaemon::start(move |line| {
        if line.starts_with("GET /_ping ") {
            Reply::Send(http("200 OK", &["Api-Version: 1.41"], "OK"))
        } else if line.starts_with("GET /v1.41/containers/json?") {
            Reply::Send(http("200 OK", &[], listed))
        } else if line.starts_with("GET /v1.41/containers/3c4df619739a") {
            Reply::Send(http("200 OK", &[], inspected))
        } else {
            Reply::Send(http(
                "404 Not Found",
                &[],
                r#"{"message":"page not found"}"#,
            ))
        }
    })
}

#[test]
fn find_container_reads_name_image_and_compose_labels() {
    let daemon = fake_docker(LISTED, INSPECTED);
    let client = Client::with_socket(&daemon.path);
    let found = client
        .find_container(&proxy("127.0.0.1", "172.17.0.2"))
        .unwrap()
        .unwrap();
    assert_eq!(
        found,
        Container {
            id: "3c4df619739a018da4a6f206fbf355c7e0868d3ddb3cb6f575d3fbf8ee6286fe".into(),
            name: "pgweb".into(),
            image: "postgres:16".into(),
            compose_project: Some("shop".into()),
            compose_service: Some("db".into()),
        }
    );
    assert_eq!(found.short_id(), "3c4df619739a");
    let heads = daemon.received();
    let list = heads[1].lines().next().unwrap();
    // filters={"publish":["45555/tcp"]}
    assert_eq!(
        list,
        "GET /v1.41/containers/json?filters=%7B%22publish%22%3A%5B%2245555%2Ftcp%22%5D%7D HTTP/1.1"
    );
    assert_eq!(
        serde_json::to_value(&found).unwrap(),
        serde_json::json!({
            "id": "3c4df619739a018da4a6f206fbf355c7e0868d3ddb3cb6f575d3fbf8ee6286fe",
            "name": "pgweb", "image": "postgres:16",
            "compose_project": "shop", "compose_service": "db"
        })
    );
}

#[test]
fn find_container_without_a_match_is_none() {
    let daemon = fake_docker(LISTED, INSPECTED);
    let client = Client::with_socket(&daemon.path);
    assert_eq!(
        client
            .find_container(&proxy("127.0.0.1", "172.17.0.99"))
            .unwrap(),
        None
    );
    let empty = fake_docker("[]", INSPECTED);
    let client = Client::with_socket(&empty.path);
    assert_eq!(
        client
            .find_container(&proxy("127.0.0.1", "172.17.0.2"))
            .unwrap(),
        None
    );
}

#[test]
fn two_matching_containers_are_ambiguous() {
    let twice: &'static str = Box::leak(
        LISTED
            .replace("\"99aa\"", "\"3c4e\"")
            .replace("127.0.0.2", "127.0.0.1")
            .replace("172.18.0.4", "172.17.0.2")
            .into_boxed_str(),
    );
    let daemon = fake_docker(twice, INSPECTED);
    let err = Client::with_socket(&daemon.path)
        .find_container(&proxy("127.0.0.1", "172.17.0.2"))
        .unwrap_err();
    match err {
        DockerError::Ambiguous { ids, proxy } => {
            assert_eq!(ids.len(), 2);
            assert_eq!(proxy, "tcp 127.0.0.1:45555 -> 172.17.0.2:80");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_list_that_is_not_the_expected_json_is_malformed() {
    let daemon = fake_docker(r#"{"not":"a list"}"#, INSPECTED);
    let err = Client::with_socket(&daemon.path)
        .find_container(&proxy("127.0.0.1", "172.17.0.2"))
        .unwrap_err();
    assert!(matches!(err, DockerError::Malformed { .. }), "{err:?}");
}

// --- stop and is_running ---

fn stop_daemon(status: &'static str) -> FakeDaemon {
    FakeDaemon::start(move |_| {
        Reply::Send(if status.starts_with("204") || status.starts_with("304") {
            format!("HTTP/1.1 {status}\r\n\r\n").into_bytes()
        } else {
            http(status, &[], r#"{"message":"No such container: abc"}"#)
        })
    })
}

#[test]
fn stop_posts_the_grace_in_whole_seconds_rounded_up() {
    let daemon = stop_daemon("204 No Content");
    let client = daemon.client();
    client.stop("abc", Duration::from_millis(2500)).unwrap();
    client.stop("abc", Duration::from_secs(10)).unwrap();
    client.stop("abc", Duration::ZERO).unwrap();
    let lines: Vec<String> = daemon
        .received()
        .iter()
        .map(|h| h.lines().next().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        lines,
        [
            "POST /v1.41/containers/abc/stop?t=3 HTTP/1.1",
            "POST /v1.41/containers/abc/stop?t=10 HTTP/1.1",
            "POST /v1.41/containers/abc/stop?t=0 HTTP/1.1",
        ]
    );
}

#[test]
fn stopping_a_stopped_container_is_success() {
    let daemon = stop_daemon("304 Not Modified");
    daemon.client().stop("abc", Duration::from_secs(1)).unwrap();
}

#[test]
fn stopping_a_missing_container_is_a_404() {
    let daemon = stop_daemon("404 Not Found");
    let err = daemon
        .client()
        .stop("abc", Duration::from_secs(1))
        .unwrap_err();
    assert!(
        matches!(err, DockerError::Status { status: 404, .. }),
        "{err:?}"
    );
}

#[test]
fn a_stop_is_bounded_by_the_grace_plus_the_margin() {
    let daemon = FakeDaemon::start(|_| Reply::Hang(Duration::from_secs(30)));
    let mut client = daemon.client();
    client.stop_margin = Duration::from_millis(300); // STOP_MARGIN is 10 s
    let started = Instant::now();
    // 1 ms rounds up to t=1: the call may take 1 s plus the margin.
    let err = client.stop("abc", Duration::from_millis(1)).unwrap_err();
    let took = started.elapsed();
    match err {
        DockerError::Timeout { limit, request, .. } => {
            assert_eq!(limit, Duration::from_millis(1300));
            assert_eq!(request, "POST /v1.41/containers/abc/stop?t=1");
        }
        other => panic!("{other:?}"),
    }
    assert!(took >= Duration::from_millis(1300), "{took:?}");
    assert!(took < Duration::from_millis(2500), "{took:?}");
}

#[test]
fn is_running_reads_the_state_and_a_missing_container_is_not_running() {
    let daemon = FakeDaemon::start(|line| {
        Reply::Send(if line.contains("/containers/up/") {
            http("200 OK", &[], r#"{"State":{"Running":true}}"#)
        } else if line.contains("/containers/down/") {
            http("200 OK", &[], r#"{"State":{"Running":false}}"#)
        } else {
            http(
                "404 Not Found",
                &[],
                r#"{"message":"No such container: gone"}"#,
            )
        })
    });
    let client = daemon.client();
    assert!(client.is_running("up").unwrap());
    assert!(!client.is_running("down").unwrap());
    assert!(!client.is_running("gone").unwrap());
}

#[test]
fn ids_are_percent_encoded_in_paths() {
    let daemon = stop_daemon("204 No Content");
    daemon
        .client()
        .stop("a/../b c", Duration::from_secs(1))
        .unwrap();
    let head = daemon.received().remove(0);
    assert!(
        head.starts_with("POST /v1.41/containers/a%2F..%2Fb%20c/stop?t=1 HTTP/1.1"),
        "{head}"
    );
}
