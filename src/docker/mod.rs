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
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::Deserialize;

mod http;
use http::{exchange, Fail, Response};

pub use crate::model::Container;

/// The socket used when `DOCKER_HOST` is unset or empty.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
/// Bound on every query (version, list, inspect).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Added to the grace period to bound a stop: the daemon waits the grace,
/// kills, and reaps the container before it answers.
pub const STOP_MARGIN: Duration = Duration::from_secs(10);
pub use http::MAX_HEADER_BYTES;
/// Largest response body read; a container list of a busy host fits many
/// times over.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Newest API version whose answers this module has been written against;
/// newer daemons are asked for this one.
pub const MAX_API_VERSION: (u32, u32) = (1, 51);

/// Compose's labels on a container it created.
const COMPOSE_PROJECT: &str = "com.docker.compose.project";
const COMPOSE_SERVICE: &str = "com.docker.compose.service";

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
            .map_err(|fail| into_error(fail, &self.socket, &request, limit))?;
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

/// The error of a failed exchange, with its request's context.
fn into_error(fail: Fail, socket: &Path, request: &str, limit: Duration) -> DockerError {
    match fail {
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

#[cfg(test)]
mod tests;
