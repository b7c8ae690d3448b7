//! Health checks of `reuse`: does the holder answer like the server the
//! policy accepts?
//!
//! `tcp` connects to the held address; an `http://` URL is fetched with a
//! bounded GET (no proxies, no redirects, the body capped) and passes when
//! the status is one of the accepted codes and the body contains the
//! policy's regex. The results are data; the report words them.

use crate::model::{PortState, Protocol};
use crate::policy::{Health, Pattern, StatusCodes};
use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// Largest health response body read; a health endpoint answers in bytes.
const BODY_LIMIT: u64 = 64 * 1024;

/// Characters of a non-matching body kept for the report.
const BODY_SHOWN: usize = 120;

/// A passed health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(tag = "check", rename_all = "snake_case")]
pub enum Passed {
    /// A TCP connect succeeded.
    Tcp {
        /// The address connected to.
        addr: String,
    },
    /// An HTTP GET answered with an accepted status (and body).
    Http {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// UDP ports are not health-checked.
    Skipped,
}

/// A failed health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(tag = "check", rename_all = "snake_case")]
pub enum Failed {
    /// The port has no address to connect to.
    NoAddress,
    /// A TCP connect failed.
    Connect {
        /// The address.
        addr: String,
        /// The system's error.
        error: String,
    },
    /// The GET failed (refused, timed out, not HTTP).
    Request {
        /// The URL.
        url: String,
        /// What went wrong.
        error: String,
    },
    /// The server answered with a status the policy does not accept.
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The body could not be read.
    ReadBody {
        /// The URL.
        url: String,
        /// What went wrong.
        error: String,
    },
    /// The body does not contain the policy's regex.
    Body {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
        /// The regex.
        pattern: String,
        /// The start of the body.
        body: String,
    },
}

/// A health check's result, as a step records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum HealthResult {
    /// It passed.
    Passed(Passed),
    /// It failed.
    Failed(Failed),
}

/// Runs `health` against the holders of `state` within `timeout`.
pub fn check(health: &Health, state: &PortState, timeout: Duration) -> Result<Passed, Failed> {
    if state.protocol == Protocol::Udp {
        return Ok(Passed::Skipped);
    }
    match health {
        Health::Tcp => tcp(state, timeout),
        Health::Http { url, body, status } => http(
            &url.replace("{port}", &state.port.to_string()),
            body.as_ref(),
            status,
            timeout,
        ),
    }
}

fn tcp(state: &PortState, timeout: Duration) -> Result<Passed, Failed> {
    let mut last = Failed::NoAddress;
    for s in &state.sockets {
        let addr = loopback_for(s.local);
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(_) => {
                return Ok(Passed::Tcp {
                    addr: addr.to_string(),
                })
            }
            Err(e) => {
                last = Failed::Connect {
                    addr: addr.to_string(),
                    error: e.to_string(),
                }
            }
        }
    }
    Err(last)
}

/// GET `url`; healthy on an accepted status within `timeout` whose body
/// contains `body` (when given). Environment proxies are ignored: the URL
/// is loopback unless the policy allowed otherwise.
fn http(
    url: &str,
    body: Option<&Pattern>,
    accepted: &StatusCodes,
    timeout: Duration,
) -> Result<Passed, Failed> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .proxy(None)
        .max_redirects(0)
        .build()
        .into();
    let mut resp = agent.get(url).call().map_err(|e| Failed::Request {
        url: url.to_string(),
        error: e.to_string(),
    })?;
    let status = resp.status().as_u16();
    if !accepted.contains(status) {
        return Err(Failed::Status {
            url: url.to_string(),
            status,
        });
    }
    if let Some(re) = body {
        let text = resp
            .body_mut()
            .with_config()
            .limit(BODY_LIMIT)
            .read_to_string()
            .map_err(|e| Failed::ReadBody {
                url: url.to_string(),
                error: e.to_string(),
            })?;
        if !re.is_match(&text) {
            return Err(Failed::Body {
                url: url.to_string(),
                status,
                pattern: re.as_str().to_string(),
                body: text.chars().take(BODY_SHOWN).collect(),
            });
        }
    }
    Ok(Passed::Http {
        url: url.to_string(),
        status,
    })
}

/// The address to reach a listener on: wildcard binds are reached on loopback.
fn loopback_for(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}
