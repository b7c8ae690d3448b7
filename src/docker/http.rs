//! HTTP/1.1 over a unix socket, just enough for the Docker Engine API: one
//! request per connection (`Connection: close`), every step bounded by one
//! deadline, headers and bodies capped.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// Largest response head (status line and headers) read.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Longest line in chunked framing (size line or trailer).
const MAX_LINE: usize = 4096;

/// How much is read from the socket at once.
const READ_CHUNK: usize = 16 * 1024;

/// A complete HTTP answer.
#[derive(Debug)]
pub(super) struct Response {
    pub(super) status: u16,
    /// Names lower-cased.
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Vec<u8>,
}

impl Response {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// How one exchange failed, before it is given its request's context.
#[derive(Debug)]
pub(super) enum Fail {
    Connect(io::Error),
    Timeout,
    Io(io::Error),
    Malformed(String),
    TooLarge(usize),
}

/// Connects, sends `method path` with `Connection: close`, and reads the
/// whole answer, all before `deadline`.
pub(super) fn exchange(
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
    // Linux sets close-on-exec and non-blocking atomically with the socket;
    // macOS has no such flags, so there they follow right after (portguard
    // forks nothing while it talks to the daemon).
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let flags = SocketFlags::CLOEXEC | SocketFlags::NONBLOCK;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let flags = SocketFlags::empty();
    let fd = rustix::net::socket_with(AddressFamily::UNIX, SocketType::STREAM, flags, None)
        .map_err(|e| Fail::Connect(e.into()))?;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC)
            .map_err(|e| Fail::Connect(e.into()))?;
        rustix::io::ioctl_fionbio(&fd, true).map_err(|e| Fail::Connect(e.into()))?;
    }
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
