//! Just enough of the Docker Engine API to name the container behind a
//! `docker-proxy` holder and to stop it (issue 11).
//!
//! `docker-proxy` is dockerd's userland port forwarder: one process per
//! published host address and port, started and stopped by dockerd. Signalling
//! it would leave the container running with a broken port mapping, so the port
//! is freed by stopping the *container* through the API instead. This module
//! turns a docker-proxy argv into [`ProxyArgs`] (a pure function, usable on a
//! root-owned proxy whose fds another user cannot read: `/proc/PID/cmdline` is
//! world-readable), finds the running container that publishes exactly that
//! mapping, and stops it.
//!
//! The transport is HTTP/1.1 over the daemon's unix socket, written here on
//! std's `UnixStream` (connected through rustix so that the connect itself can
//! time out) and `serde_json`: no async runtime and no HTTP crate. ureq, which
//! the crate has for health checks, reaches unix sockets only through its
//! semver-exempt transport API.
//!
//! Guarantees, for every call:
//! - **Time**: one deadline covers connecting, writing and every read, so a
//!   daemon that hangs, never accepts, or dribbles a byte at a time fails with
//!   [`DockerError::Timeout`] when the deadline passes, not after a per-read
//!   timeout multiplied by the number of reads. Queries get
//!   [`DEFAULT_TIMEOUT`]; [`Client::stop`] gets the grace period plus
//!   [`STOP_MARGIN`].
//! - **Memory**: response headers are capped at [`MAX_HEADER_BYTES`] and bodies
//!   at [`MAX_BODY_BYTES`] ([`DockerError::TooLarge`]). Bodies framed by
//!   `Content-Length`, `Transfer-Encoding: chunked` or the end of the
//!   connection (`Connection: close`) are all understood.
//! - **Version**: the client asks `GET /_ping` for the daemon's API version and
//!   pins every later path to `min(daemon, `[`MAX_API_VERSION`]`)`, like the
//!   docker CLI does. A fixed old version would break on daemons that have
//!   raised their minimum (Docker 29 refuses anything below 1.44); the fields
//!   read here (`Id`, `Names`, `Image`, `Ports`, `Labels`,
//!   `NetworkSettings.Networks`, `Config.Image`, `State.Running`) are the same
//!   from API 1.24 on. Debian 12's docker.io (20.10) speaks 1.41.
//!
//! The socket is `$DOCKER_HOST` when it is `unix://PATH`, else
//! [`DEFAULT_SOCKET`]; any other scheme is [`DockerError::UnsupportedHost`].

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::Deserialize;

pub use crate::model::Container;

/// The socket used when `DOCKER_HOST` is unset or empty.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
/// Bound on every query (version, list, inspect).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Added to the grace period to bound a stop: the daemon waits the grace,
/// kills, and reaps the container before it answers.
pub const STOP_MARGIN: Duration = Duration::from_secs(10);
/// Largest response head (status line and headers) read.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Largest response body read; a container list of a busy host fits many
/// times over.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Newest API version whose answers this module has been written against;
/// newer daemons are asked for this one.
pub const MAX_API_VERSION: (u32, u32) = (1, 51);

/// Compose's labels on a container it created.
const COMPOSE_PROJECT: &str = "com.docker.compose.project";
const COMPOSE_SERVICE: &str = "com.docker.compose.service";
/// How much is read from the socket at once.
const READ_CHUNK: usize = 16 * 1024;
/// Longest line in chunked framing (size line or trailer).
const MAX_LINE: usize = 4096;

/// Why talking to Docker failed. Each variant says what a user can do about it.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// `DOCKER_HOST` names something other than a unix socket.
    #[error(
        "DOCKER_HOST={value:?} is not supported: only unix sockets are supported (unix:///path/to/docker.sock)"
    )]
    UnsupportedHost {
        /// The value of `DOCKER_HOST`.
        value: String,
    },
    /// Nothing answers on the socket (no such file, connection refused, ...).
    #[error("the Docker daemon is unreachable at {}: {source}", socket.display())]
    Unreachable {
        /// The socket tried.
        socket: PathBuf,
        /// The error from `connect`.
        source: io::Error,
    },
    /// The socket exists but this user may not connect to it.
    #[error(
        "permission denied on the Docker socket {} (is this user in the docker group?)",
        socket.display()
    )]
    PermissionDenied {
        /// The socket tried.
        socket: PathBuf,
    },
    /// The daemon did not complete its answer within the call's deadline.
    #[error(
        "the Docker daemon at {} did not answer {request} within {}",
        socket.display(),
        humantime::format_duration(*limit)
    )]
    Timeout {
        /// The socket used.
        socket: PathBuf,
        /// Method and path of the request, e.g. `POST /v1.41/containers/ID/stop?t=10`.
        request: String,
        /// The deadline the call had.
        limit: Duration,
    },
    /// The connection broke after it was established.
    #[error("the connection to the Docker daemon broke during {request}: {source}")]
    Connection {
        /// Method and path of the request.
        request: String,
        /// The I/O error.
        source: io::Error,
    },
    /// The daemon answered with an error status.
    #[error("Docker answered {request} with HTTP {status}: {message}")]
    Status {
        /// Method and path of the request.
        request: String,
        /// The HTTP status code.
        status: u16,
        /// Docker's `message`, or the start of the body when it has none.
        message: String,
    },
    /// The answer is not HTTP/1.x or not the JSON expected.
    #[error("malformed answer from Docker to {request}: {reason}")]
    Malformed {
        /// Method and path of the request.
        request: String,
        /// What was wrong with it.
        reason: String,
    },
    /// The answer's head or body exceeds the caps.
    #[error("Docker's answer to {request} is larger than {limit} bytes")]
    TooLarge {
        /// Method and path of the request.
        request: String,
        /// The cap that was exceeded.
        limit: usize,
    },
    /// More than one running container matches one docker-proxy; stopping any
    /// of them would be a guess.
    #[error("{} running containers match {proxy}: {}", ids.len(), ids.join(", "))]
    Ambiguous {
        /// The mapping looked for, e.g. `tcp 127.0.0.1:8080 -> 172.17.0.2:80`.
        proxy: String,
        /// The ids of the matching containers.
        ids: Vec<String>,
    },
}

/// What a `docker-proxy` command line says it forwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyArgs {
    /// `tcp`, `udp` or `sctp`, lower-case.
    pub proto: String,
    /// The host address it listens on (`0.0.0.0` or `::` for all).
    pub host_ip: IpAddr,
    /// The published host port.
    pub host_port: u16,
    /// The container's address it forwards to.
    pub container_ip: IpAddr,
    /// The container's port it forwards to.
    pub container_port: u16,
}

impl std::fmt::Display for ProxyArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = std::net::SocketAddr::new(self.host_ip, self.host_port);
        let container = std::net::SocketAddr::new(self.container_ip, self.container_port);
        write!(f, "{} {host} -> {container}", self.proto)
    }
}

/// Parses a `docker-proxy` command line (`/proc/PID/cmdline` split at NULs).
///
/// `None` unless `argv[0]`'s file name is `docker-proxy` and the host port,
/// container address and container port are all present and valid. Flags are
/// read as Go's `flag` package reads them: `-name value`, `--name value`,
/// `-name=value`; boolean flags such as `-use-listen-fd` (Docker 25+) take no
/// value; a later occurrence wins; `--` or the first non-flag ends them.
/// `-proto` defaults to `tcp`, `-host-ip` to all addresses. An address list
/// (SCTP multi-homing: `-host-ip 10.0.0.1,10.0.0.2`) yields its first address.
pub fn parse_docker_proxy_argv(argv: &[String]) -> Option<ProxyArgs> {
    let program = argv.first()?;
    if Path::new(program).file_name()? != "docker-proxy" {
        return None;
    }
    let mut proto = None;
    let mut host_ip = None;
    let mut host_port = None;
    let mut container_ip = None;
    let mut container_port = None;
    let mut rest = argv[1..].iter();
    while let Some(arg) = rest.next() {
        if arg == "--" || !arg.starts_with('-') || arg == "-" {
            break;
        }
        let flag = arg.strip_prefix("--").unwrap_or(&arg[1..]);
        let (name, inline) = match flag.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (flag, None),
        };
        let slot = match name {
            "proto" => &mut proto,
            "host-ip" => &mut host_ip,
            "host-port" => &mut host_port,
            "container-ip" => &mut container_ip,
            "container-port" => &mut container_port,
            // Boolean flags of newer versions; a value only when inline.
            "use-listen-fd" => continue,
            // An unknown flag: skip its value if one seems to follow.
            _ => {
                if inline.is_none() {
                    if let Some(next) = rest.as_slice().first() {
                        if !next.starts_with('-') {
                            rest.next();
                        }
                    }
                }
                continue;
            }
        };
        let value = match inline {
            Some(value) => value,
            None => rest.next()?.clone(),
        };
        *slot = Some(value);
    }
    let first = |list: &str| list.split(',').next().unwrap_or("").trim().to_string();
    let port = |s: &str| s.trim().parse::<u16>().ok().filter(|p| *p != 0);
    Some(ProxyArgs {
        proto: proto.unwrap_or_else(|| "tcp".into()).to_ascii_lowercase(),
        host_ip: match host_ip.as_deref().map(first) {
            None => IpAddr::from([0, 0, 0, 0]),
            Some(ip) if ip.is_empty() => IpAddr::from([0, 0, 0, 0]),
            Some(ip) => parse_ip(&ip)?,
        },
        host_port: port(host_port.as_deref()?)?,
        container_ip: parse_ip(&first(container_ip.as_deref()?))?,
        container_port: port(container_port.as_deref()?)?,
    })
}

/// An address as Docker writes it; IPv6 may come bracketed.
fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    let s = s
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(s);
    s.parse().ok()
}

/// A connection to one Docker daemon's API socket.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
    timeout: Duration,
    stop_margin: Duration,
    body_limit: usize,
    /// The path prefix (`/v1.41`) once negotiated; empty for a daemon that
    /// names no version.
    api: OnceLock<String>,
}

impl Client {
    /// The client for `$DOCKER_HOST` (see [`Client::from_docker_host`]).
    pub fn from_env() -> Result<Client, DockerError> {
        let value = std::env::var_os("DOCKER_HOST");
        let value = value.as_ref().map(|v| v.to_string_lossy());
        Client::from_docker_host(value.as_deref())
    }

    /// The client for a `DOCKER_HOST` value: `unix://PATH` is that socket,
    /// unset or empty is [`DEFAULT_SOCKET`], anything else (`tcp://`, `ssh://`,
    /// `npipe://`, a bare path) is [`DockerError::UnsupportedHost`].
    pub fn from_docker_host(value: Option<&str>) -> Result<Client, DockerError> {
        match value {
            None | Some("") => Ok(Client::with_socket(DEFAULT_SOCKET)),
            Some(value) => match value.strip_prefix("unix://") {
                Some(path) if !path.is_empty() => Ok(Client::with_socket(path)),
                _ => Err(DockerError::UnsupportedHost {
                    value: value.to_string(),
                }),
            },
        }
    }

    /// The client for the daemon listening on `socket`.
    pub fn with_socket(socket: impl Into<PathBuf>) -> Client {
        Client {
            socket: socket.into(),
            timeout: DEFAULT_TIMEOUT,
            stop_margin: STOP_MARGIN,
            body_limit: MAX_BODY_BYTES,
            api: OnceLock::new(),
        }
    }

    /// Sets the bound on each query (default [`DEFAULT_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The running container that `proxy` forwards to, if any.
    ///
    /// A container matches when it publishes `host_port`/`proto` from
    /// `container_port` (and from `host_ip`, unless the proxy listens on all
    /// addresses), and one of its networks gives it `container_ip`. The list
    /// is asked for with a `publish` filter, and the one match is inspected for
    /// the image reference it was created with. Two matches are
    /// [`DockerError::Ambiguous`].
    pub fn find_container(&self, proxy: &ProxyArgs) -> Result<Option<Container>, DockerError> {
        let deadline = Instant::now() + self.timeout;
        let api = self.api(deadline)?;
        let filters = serde_json::json!({
            "publish": [format!("{}/{}", proxy.host_port, proxy.proto)],
        });
        let path = format!(
            "{api}/containers/json?filters={}",
            encode(&filters.to_string())
        );
        let listed: Vec<ListedContainer> = self.get_json(&path, deadline)?;
        let matching: Vec<&ListedContainer> = listed.iter().filter(|c| c.forwards(proxy)).collect();
        let found = match matching.as_slice() {
            [] => return Ok(None),
            [one] => *one,
            many => {
                return Err(DockerError::Ambiguous {
                    proxy: proxy.to_string(),
                    ids: many.iter().map(|c| c.id.clone()).collect(),
                })
            }
        };
        let Some(inspected) = self.inspect(&found.id, deadline)? else {
            return Ok(None); // removed since the list
        };
        let labels = inspected.config.labels.unwrap_or_default();
        let name = inspected
            .name
            .or_else(|| found.names.first().cloned())
            .unwrap_or_default();
        Ok(Some(Container {
            id: found.id.clone(),
            name: name.strip_prefix('/').unwrap_or(&name).to_string(),
            image: inspected
                .config
                .image
                .filter(|i| !i.is_empty())
                .unwrap_or_else(|| found.image.clone()),
            compose_project: labels.get(COMPOSE_PROJECT).cloned(),
            compose_service: labels.get(COMPOSE_SERVICE).cloned(),
        }))
    }

    /// Stops container `id`: `POST /containers/{id}/stop?t=<grace, whole
    /// seconds rounded up>`. The daemon sends the container's stop signal,
    /// waits `grace`, then kills it; the call is bounded by `grace` plus
    /// [`STOP_MARGIN`]. An already stopped container (HTTP 304) is success; a
    /// container that no longer exists is `Status { status: 404, .. }`.
    pub fn stop(&self, id: &str, grace: Duration) -> Result<(), DockerError> {
        let secs = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
        let limit = Duration::from_secs(secs).saturating_add(self.stop_margin);
        let deadline = Instant::now() + limit;
        let api = self.api(deadline)?;
        let path = format!("{api}/containers/{}/stop?t={secs}", encode(id));
        self.call("POST", &path, deadline, limit).map(|_| ())
    }

    /// Whether container `id` is running; a container that no longer exists
    /// is not.
    pub fn is_running(&self, id: &str) -> Result<bool, DockerError> {
        let deadline = Instant::now() + self.timeout;
        Ok(self.inspect(id, deadline)?.is_some_and(|c| c.state.running))
    }

    /// `GET /containers/{id}/json`; `None` on 404.
    fn inspect(&self, id: &str, deadline: Instant) -> Result<Option<Inspected>, DockerError> {
        let api = self.api(deadline)?;
        let path = format!("{api}/containers/{}/json", encode(id));
        match self.get_json(&path, deadline) {
            Ok(inspected) => Ok(Some(inspected)),
            Err(DockerError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The negotiated path prefix, asking the daemon once per client.
    fn api(&self, deadline: Instant) -> Result<&str, DockerError> {
        if let Some(api) = self.api.get() {
            return Ok(api);
        }
        let response = self.call("GET", "/_ping", deadline, self.timeout)?;
        let prefix = negotiate(response.header("api-version"));
        Ok(self.api.get_or_init(|| prefix))
    }

    fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        deadline: Instant,
    ) -> Result<T, DockerError> {
        let response = self.call("GET", path, deadline, self.timeout)?;
        serde_json::from_slice(&response.body).map_err(|e| DockerError::Malformed {
            request: format!("GET {path}"),
            reason: format!("not the JSON expected: {e}"),
        })
    }

    /// One request on a fresh connection; a status other than 2xx or 304 is
    /// [`DockerError::Status`]. `limit` is only reported.
    fn call(
        &self,
        method: &str,
        path: &str,
        deadline: Instant,
        limit: Duration,
    ) -> Result<Response, DockerError> {
        let request = format!("{method} {path}");
        let response = exchange(&self.socket, method, path, deadline, self.body_limit)
            .map_err(|fail| fail.into_error(&self.socket, &request, limit))?;
        if (200..300).contains(&response.status) || response.status == 304 {
            Ok(response)
        } else {
            Err(DockerError::Status {
                request,
                status: response.status,
                message: error_message(&response.body),
            })
        }
    }
}

/// The path prefix for a daemon whose `_ping` said `Api-Version: header`.
fn negotiate(header: Option<&str>) -> String {
    let parsed = header.and_then(|v| {
        let (major, minor) = v.trim().split_once('.')?;
        Some((major.parse::<u32>().ok()?, minor.parse::<u32>().ok()?))
    });
    match parsed {
        Some(version) => {
            let (major, minor) = version.min(MAX_API_VERSION);
            format!("/v{major}.{minor}")
        }
        None => String::new(),
    }
}

/// Docker's `{"message": "..."}`, or the start of whatever the body is.
fn error_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct ErrorBody {
        message: String,
    }
    if let Ok(e) = serde_json::from_slice::<ErrorBody>(body) {
        return e.message;
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        "(no message)".into()
    } else {
        text.chars().take(300).collect()
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One entry of `GET /containers/json`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListedContainer {
    id: String,
    #[serde(default)]
    names: Vec<String>,
    #[serde(default)]
    image: String,
    #[serde(default)]
    ports: Vec<PortBinding>,
    #[serde(default)]
    network_settings: Option<ListedNetworks>,
}

#[derive(Debug, Deserialize)]
struct PortBinding {
    #[serde(rename = "IP", default)]
    ip: Option<String>,
    #[serde(rename = "PrivatePort")]
    private_port: u16,
    #[serde(rename = "PublicPort", default)]
    public_port: Option<u16>,
    #[serde(rename = "Type", default)]
    kind: String,
}

#[derive(Debug, Deserialize)]
struct ListedNetworks {
    #[serde(rename = "Networks", default)]
    networks: Option<HashMap<String, Endpoint>>,
}

#[derive(Debug, Deserialize)]
struct Endpoint {
    #[serde(rename = "IPAddress", default)]
    ip_address: Option<String>,
    #[serde(rename = "GlobalIPv6Address", default)]
    global_ipv6_address: Option<String>,
}

impl ListedContainer {
    /// Whether this container is what `proxy` forwards to.
    fn forwards(&self, proxy: &ProxyArgs) -> bool {
        let publishes = self.ports.iter().any(|p| {
            p.public_port == Some(proxy.host_port)
                && p.private_port == proxy.container_port
                && p.kind.eq_ignore_ascii_case(&proxy.proto)
                && (proxy.host_ip.is_unspecified()
                    || p.ip.as_deref().and_then(parse_ip) == Some(proxy.host_ip))
        });
        let addressed = self
            .network_settings
            .as_ref()
            .and_then(|n| n.networks.as_ref())
            .is_some_and(|networks| {
                networks.values().any(|e| {
                    [&e.ip_address, &e.global_ipv6_address]
                        .into_iter()
                        .any(|ip| ip.as_deref().and_then(parse_ip) == Some(proxy.container_ip))
                })
            });
        publishes && addressed
    }
}

/// The parts of `GET /containers/{id}/json` used here.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Inspected {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    config: InspectedConfig,
    #[serde(default)]
    state: InspectedState,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectedConfig {
    #[serde(default)]
    image: Option<String>,
    #[serde(default)]
    labels: Option<HashMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectedState {
    #[serde(default)]
    running: bool,
}

/// A complete HTTP answer.
#[derive(Debug)]
struct Response {
    status: u16,
    /// Names lower-cased.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// How one exchange failed, before it is given its request's context.
#[derive(Debug)]
enum Fail {
    Connect(io::Error),
    Timeout,
    Io(io::Error),
    Malformed(String),
    TooLarge(usize),
}

impl Fail {
    fn into_error(self, socket: &Path, request: &str, limit: Duration) -> DockerError {
        match self {
            Fail::Connect(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                DockerError::PermissionDenied {
                    socket: socket.to_path_buf(),
                }
            }
            Fail::Connect(source) => DockerError::Unreachable {
                socket: socket.to_path_buf(),
                source,
            },
            Fail::Timeout => DockerError::Timeout {
                socket: socket.to_path_buf(),
                request: request.to_string(),
                limit,
            },
            Fail::Io(source) => DockerError::Connection {
                request: request.to_string(),
                source,
            },
            Fail::Malformed(reason) => DockerError::Malformed {
                request: request.to_string(),
                reason,
            },
            Fail::TooLarge(limit) => DockerError::TooLarge {
                request: request.to_string(),
                limit,
            },
        }
    }
}

/// Connects, sends `method path` with `Connection: close`, and reads the
/// whole answer, all before `deadline`.
fn exchange(
    socket: &Path,
    method: &str,
    path: &str,
    deadline: Instant,
    body_limit: usize,
) -> Result<Response, Fail> {
    let mut stream = connect(socket, deadline)?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: portguard/{}\r\n\
         Accept: application/json\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    stream
        .set_write_timeout(Some(remaining(deadline)?))
        .map_err(Fail::Io)?;
    stream.write_all(head.as_bytes()).map_err(io_fail)?;
    let mut reader = Reader {
        stream,
        buf: Vec::new(),
        deadline,
        eof: false,
    };
    reader.response(method, body_limit)
}

/// Connects without blocking past `deadline`. A unix-socket connect blocks
/// while the daemon's accept backlog is full (a daemon that stopped
/// accepting), so it is made non-blocking and retried on `EAGAIN`.
fn connect(socket: &Path, deadline: Instant) -> Result<UnixStream, Fail> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let addr = SocketAddrUnix::new(socket).map_err(|e| Fail::Connect(e.into()))?;
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )
    .map_err(|e| Fail::Connect(e.into()))?;
    loop {
        match rustix::net::connect(&fd, &addr) {
            Ok(()) => break,
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::AGAIN) => {
                let left = remaining(deadline)?;
                std::thread::sleep(left.min(Duration::from_millis(5)));
            }
            Err(e) => return Err(Fail::Connect(e.into())),
        }
    }
    rustix::io::ioctl_fionbio(&fd, false).map_err(|e| Fail::Io(e.into()))?;
    Ok(UnixStream::from(fd))
}

/// Time left before `deadline`, or [`Fail::Timeout`].
fn remaining(deadline: Instant) -> Result<Duration, Fail> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(Fail::Timeout)
    } else {
        Ok(left)
    }
}

fn io_fail(e: io::Error) -> Fail {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Fail::Timeout,
        _ => Fail::Io(e),
    }
}

/// Reads one HTTP/1.x response off a stream, every read bounded by the
/// deadline. `buf` holds bytes read but not yet consumed.
struct Reader {
    stream: UnixStream,
    buf: Vec<u8>,
    deadline: Instant,
    eof: bool,
}

impl Reader {
    /// Reads more into `buf`; `Ok(0)` at the end of the stream.
    fn fill(&mut self) -> Result<usize, Fail> {
        if self.eof {
            return Ok(0);
        }
        let left = remaining(self.deadline)?;
        self.stream.set_read_timeout(Some(left)).map_err(Fail::Io)?;
        let old = self.buf.len();
        self.buf.resize(old + READ_CHUNK, 0);
        let read = loop {
            match self.stream.read(&mut self.buf[old..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        match read {
            Ok(n) => {
                self.buf.truncate(old + n);
                self.eof = n == 0;
                Ok(n)
            }
            Err(e) => {
                self.buf.truncate(old);
                Err(io_fail(e))
            }
        }
    }

    fn response(&mut self, method: &str, body_limit: usize) -> Result<Response, Fail> {
        // The head: everything up to the first empty line.
        let mut searched = 0;
        let head_end = loop {
            if let Some(at) = find(&self.buf[searched..], b"\r\n\r\n") {
                break searched + at;
            }
            searched = self.buf.len().saturating_sub(3);
            if self.buf.len() > MAX_HEADER_BYTES {
                return Err(Fail::TooLarge(MAX_HEADER_BYTES));
            }
            if self.fill()? == 0 {
                return Err(Fail::Malformed(
                    "the connection closed before the response head ended".into(),
                ));
            }
        };
        if head_end > MAX_HEADER_BYTES {
            return Err(Fail::TooLarge(MAX_HEADER_BYTES));
        }
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        self.buf.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let status = parse_status_line(lines.next().unwrap_or(""))?;
        let mut headers = Vec::new();
        for line in lines {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| Fail::Malformed(format!("bad header line {line:?}")))?;
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
        let get = |name: &'static str| values(&headers, name);

        let body = if method == "HEAD" || status / 100 == 1 || status == 204 || status == 304 {
            Vec::new()
        } else if let Some(coding) = get("transfer-encoding").last() {
            let last = coding.rsplit(',').next().unwrap_or("").trim();
            if !last.eq_ignore_ascii_case("chunked") {
                return Err(Fail::Malformed(format!(
                    "unsupported Transfer-Encoding {coding:?}"
                )));
            }
            self.chunked(body_limit)?
        } else if let Some(length) = content_length(get("content-length"))? {
            if length > body_limit {
                return Err(Fail::TooLarge(body_limit));
            }
            while self.buf.len() < length {
                if self.fill()? == 0 {
                    return Err(Fail::Malformed(format!(
                        "the connection closed after {} of {length} body bytes",
                        self.buf.len()
                    )));
                }
            }
            self.buf.truncate(length);
            std::mem::take(&mut self.buf)
        } else {
            // No framing: the body runs to the end of the connection.
            while self.fill()? > 0 {
                if self.buf.len() > body_limit {
                    return Err(Fail::TooLarge(body_limit));
                }
            }
            std::mem::take(&mut self.buf)
        };
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    /// Decodes a chunked body; `buf` starts at the first size line.
    fn chunked(&mut self, body_limit: usize) -> Result<Vec<u8>, Fail> {
        let mut body = Vec::new();
        loop {
            let line = self.line()?;
            let size = line.split(';').next().unwrap_or("").trim();
            let size = (size.len() <= 16)
                .then(|| u64::from_str_radix(size, 16).ok())
                .flatten()
                .ok_or_else(|| Fail::Malformed(format!("bad chunk size line {line:?}")))?;
            if size == 0 {
                // Trailers, up to the empty line.
                while !self.line()?.is_empty() {}
                return Ok(body);
            }
            let size = usize::try_from(size).unwrap_or(usize::MAX);
            if size > body_limit.saturating_sub(body.len()) {
                return Err(Fail::TooLarge(body_limit));
            }
            while self.buf.len() < size + 2 {
                if self.fill()? == 0 {
                    return Err(Fail::Malformed(
                        "the connection closed inside a chunk".into(),
                    ));
                }
            }
            if &self.buf[size..size + 2] != b"\r\n" {
                return Err(Fail::Malformed("a chunk does not end in CRLF".into()));
            }
            body.extend_from_slice(&self.buf[..size]);
            self.buf.drain(..size + 2);
        }
    }

    /// One CRLF-terminated line of chunked framing, consumed.
    fn line(&mut self) -> Result<String, Fail> {
        let mut searched = 0;
        loop {
            if let Some(at) = find(&self.buf[searched..], b"\r\n") {
                let end = searched + at;
                let line = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 2);
                return Ok(line);
            }
            if self.buf.len() > MAX_LINE {
                return Err(Fail::Malformed("a chunk framing line is too long".into()));
            }
            searched = self.buf.len().saturating_sub(1);
            if self.fill()? == 0 {
                return Err(Fail::Malformed(
                    "the connection closed inside the chunked body".into(),
                ));
            }
        }
    }
}

/// Every value of header `name` (lower-case).
fn values<'a>(headers: &'a [(String, String)], name: &'a str) -> impl Iterator<Item = &'a str> {
    headers
        .iter()
        .filter(move |(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `HTTP/1.1 200 OK` -> 200.
fn parse_status_line(line: &str) -> Result<u16, Fail> {
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        return Err(Fail::Malformed(format!("bad status line {line:?}")));
    }
    code.parse()
        .map_err(|_| Fail::Malformed(format!("bad status line {line:?}")))
}

/// The one `Content-Length`, if any; differing values are malformed.
fn content_length<'a>(mut values: impl Iterator<Item = &'a str>) -> Result<Option<usize>, Fail> {
    let Some(first) = values.next() else {
        return Ok(None);
    };
    let parse = |v: &str| {
        v.trim()
            .parse::<u64>()
            .map_err(|_| Fail::Malformed(format!("bad Content-Length {v:?}")))
    };
    let length = parse(first)?;
    for other in values {
        if parse(other)? != length {
            return Err(Fail::Malformed("conflicting Content-Length headers".into()));
        }
    }
    Ok(Some(usize::try_from(length).unwrap_or(usize::MAX)))
}

#[cfg(test)]
mod tests;
