//! Linux socket lookup through netlink sock_diag (`inet_diag`), the native
//! backend.
//!
//! Reading `/proc/net/tcp` makes the kernel format every socket on the host
//! as text (60,000 connections: ~130 ms and 9 MB) only for portguard to keep
//! the few rows on one port. sock_diag asks the kernel for exactly those
//! rows: the request carries the port twice, as `idiag_sport` (which the
//! TCP and, on current kernels, the UDP dump loops skip on before doing any
//! work) and as an inet_diag bytecode program `sport >= P && sport <= P`
//! (which every kernel since 2.6 runs on each socket, so older kernels
//! filter too). A LISTEN-only query never walks the established hash at all:
//! the re-check while waiting for a port costs ~0.1 ms on any host.
//!
//! Sockets found here carry the same fields as a `/proc/net` row (address,
//! state, uid, inode), and the holders are then found by the same
//! `/proc/*/fd` scan as the procfs backend, so both paths give identical
//! holders (`tests/discovery_backends.rs` holds them to that).
//!
//! **Other sockets on the port** ([`PortState::others`](crate::model::PortState::others): connections that
//! use the port without holding it) are not listed by default. Any TCP state
//! but LISTEN lives in the kernel's established hash, which has no index by
//! local port: finding them means walking every bucket (262,144 on this
//! 24 GB machine), 3.7 ms per address family on an idle host and ~25 ms with
//! 60,000 connections, for a list that only decorates the report. That
//! would triple the free-port path of a pre-start hook, so it is opt-in:
//! [`with_others`](crate::discovery::owners::ProcDiscovery::with_others) lists them exactly as `/proc/net` does
//! (the cross-backend tests use it), and `--backend procfs` always does.
//! UDP has no such split: every bound UDP socket holds the port.
//!
//! Netlink can be unavailable: a seccomp filter or a sandbox (gVisor)
//! refuses the socket, or the `inet_diag`/`udp_diag` module is missing. Any
//! netlink failure falls back to `/proc/net` for that protocol, and the
//! fallback is remembered so a wait loop does not retry a dead path every
//! few milliseconds.
//!
//! The packets are a 16-byte header, a 56-byte request and a 20-byte
//! attribute; the replies are parsed by [`parse_replies`], a pure function
//! tested on bytes recorded from a real kernel. This is written against
//! rustix (already a dependency) rather than the netlink-packet-* crates:
//! those add nine crates (a second `syn` among them) and cannot emit the
//! bytecode attribute.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rustix::buffer::spare_capacity;
use rustix::io::Errno;
use rustix::net::netlink::{self, SocketAddrNetlink};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

use super::procnet::ProcNet;
use super::{Rows, SocketTable};
use crate::discovery::DiscoveryError;
use crate::model::{Protocol, SocketEntry};

/// `SOCK_DIAG_BY_FAMILY`: the message type of inet_diag requests and replies.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
/// `NLM_F_ROOT | NLM_F_MATCH`: every matching socket, not one lookup.
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_HDRLEN: usize = 16;
/// `struct inet_diag_req_v2`.
const REQ_LEN: usize = 56;
/// `struct inet_diag_msg`.
const MSG_LEN: usize = 72;
/// Request attribute carrying the filter program.
const INET_DIAG_REQ_BYTECODE: u16 = 1;
const INET_DIAG_BC_S_GE: u8 = 2;
const INET_DIAG_BC_S_LE: u8 = 3;
/// Four `struct inet_diag_bc_op`s: two comparisons, each followed by its port.
const BYTECODE_LEN: usize = 16;
/// Total length of one request message.
pub const REQUEST_LEN: usize = NLMSG_HDRLEN + REQ_LEN + 4 + BYTECODE_LEN;

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

/// Every TCP state `/proc/net/tcp` shows: 1 (ESTABLISHED) to 11 (CLOSING),
/// and 12 (NEW_SYN_RECV, reported as SYN_RECV). Not 13 (BOUND_INACTIVE):
/// a socket bound without `listen()` is in no `/proc/net` table and holds
/// nothing, so asking for it would only make the paths disagree.
const TCP_ALL_STATES: u32 = ((1 << 13) - 1) & !1;
const TCP_LISTEN_ONLY: u32 = 1 << SocketEntry::TCP_LISTEN;
/// UDP sockets are `CLOSE` (unconnected, 7) or `ESTABLISHED` (connected, 1);
/// any bound one holds the port.
const UDP_ALL_STATES: u32 = u32::MAX;

/// Largest datagram the kernel sends for a dump (`netlink_dump` caps its
/// buffer at 32 KiB); twice that, so truncation would be a kernel change,
/// which is detected and treated as a failure.
const RECV_BUF: usize = 64 * 1024;

/// A blocked netlink socket should never happen; if it does (a broken
/// sandbox), fall back rather than hang the pre-start hook.
const RECV_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a netlink query failed. Every kind leads to the `/proc/net` fallback;
/// the kinds exist for the tests and for whoever debugs a sandbox.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetlinkError {
    /// The socket could not be created or used (EPERM under seccomp,
    /// EAFNOSUPPORT/EPROTONOSUPPORT without netlink, a receive timeout).
    #[error("netlink socket: {0}")]
    Socket(Errno),
    /// The kernel answered the request with an error (ENOENT: no diag
    /// module for the protocol; EINVAL: it rejected the request).
    #[error("sock_diag request refused: {0}")]
    Kernel(Errno),
    /// A reply that does not have the kernel's layout.
    #[error("malformed sock_diag reply: {0}")]
    Malformed(&'static str),
}

/// The socket table from netlink sock_diag, falling back to `/proc/net`
/// (per protocol, remembered) when netlink fails.
#[derive(Debug, Default)]
pub struct Netlink {
    procnet: ProcNet,
    /// Per protocol (TCP, UDP): netlink failed once, use `/proc/net`.
    fallback: [AtomicBool; 2],
}

impl Netlink {
    /// Netlink, with `procnet` as the fallback.
    pub fn new(procnet: ProcNet) -> Self {
        Self {
            procnet,
            fallback: Default::default(),
        }
    }

    /// Whether the socket table for `proto` now comes from `/proc/net`
    /// because netlink failed.
    pub fn uses_fallback(&self, proto: Protocol) -> bool {
        self.fallback_flag(proto).load(Ordering::Relaxed)
    }

    fn fallback_flag(&self, proto: Protocol) -> &AtomicBool {
        match proto {
            Protocol::Tcp => &self.fallback[0],
            Protocol::Udp => &self.fallback[1],
        }
    }
}

impl SocketTable for Netlink {
    /// The rows from netlink, or from `/proc/net` once netlink has failed
    /// for `proto`.
    fn rows(
        &self,
        port: u16,
        proto: Protocol,
        rows: Rows,
    ) -> Result<Vec<SocketEntry>, DiscoveryError> {
        if !self.uses_fallback(proto) {
            match query(port, proto, rows) {
                Ok(found) => return Ok(found),
                Err(_) => self.fallback_flag(proto).store(true, Ordering::Relaxed),
            }
        }
        self.procnet.port_rows(port, proto)
    }
}

/// Ask the kernel for the `proto` sockets on local port `port` in `scope`,
/// IPv4 then IPv6, in the kernel's order.
///
/// A host without IPv6 answers the IPv6 request with ENOENT (no handler for
/// the family); like a missing `/proc/net/tcp6`, that means "no IPv6
/// sockets". The same error for IPv4 means no diag module, a failure.
pub fn query(port: u16, proto: Protocol, rows: Rows) -> Result<Vec<SocketEntry>, NetlinkError> {
    let socket = rustix::net::socket_with(
        AddressFamily::NETLINK,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        Some(netlink::SOCK_DIAG),
    )
    .map_err(NetlinkError::Socket)?;
    rustix::net::sockopt::set_socket_timeout(
        &socket,
        rustix::net::sockopt::Timeout::Recv,
        Some(RECV_TIMEOUT),
    )
    .map_err(NetlinkError::Socket)?;
    let (protocol, states) = match (proto, rows) {
        (Protocol::Tcp, Rows::Holding) => (IPPROTO_TCP, TCP_LISTEN_ONLY),
        (Protocol::Tcp, Rows::All) => (IPPROTO_TCP, TCP_ALL_STATES),
        (Protocol::Udp, _) => (IPPROTO_UDP, UDP_ALL_STATES),
    };
    // Not zeroed: the kernel writes what is read, and a free port's answer
    // is 20 bytes, so the rest is never touched (zeroing it was a third of
    // the query).
    let mut buf = Vec::with_capacity(RECV_BUF);
    let mut rows = Vec::new();
    for (seq, family) in [(1, AF_INET), (2, AF_INET6)] {
        let request = encode_request(seq, family, protocol, states, port);
        match dump(&socket, &request, seq, port, &mut buf, &mut rows) {
            Ok(()) => {}
            Err(NetlinkError::Kernel(Errno::NOENT)) if family == AF_INET6 => {}
            Err(err) => return Err(err),
        }
    }
    Ok(rows)
}

/// Send one dump request and collect its replies until `NLMSG_DONE`.
fn dump(
    socket: &OwnedFd,
    request: &[u8],
    seq: u32,
    port: u16,
    buf: &mut Vec<u8>,
    rows: &mut Vec<SocketEntry>,
) -> Result<(), NetlinkError> {
    let kernel = SocketAddrNetlink::new(0, 0);
    rustix::net::sendto(socket, request, SendFlags::empty(), &kernel)
        .map_err(NetlinkError::Socket)?;
    loop {
        buf.clear();
        let (len, full) = rustix::io::retry_on_intr(|| {
            rustix::net::recv(socket, spare_capacity(buf), RecvFlags::TRUNC)
        })
        .map_err(NetlinkError::Socket)?;
        if full > len {
            return Err(NetlinkError::Malformed("datagram larger than the buffer"));
        }
        let data = buf.get(..len).ok_or(NetlinkError::Malformed("length"))?;
        if parse_replies(data, seq, port, rows)? {
            return Ok(());
        }
    }
}

/// The request: `nlmsghdr`, `inet_diag_req_v2` for `family`/`protocol`
/// with the `states` bitmask and `idiag_sport = port`, and the bytecode
/// attribute `sport >= port && sport <= port`.
///
/// The bytecode uses `S_GE`/`S_LE` rather than `S_EQ` (kernel 4.16+) so it
/// runs on every kernel. Each comparison is followed by an op whose `no`
/// field holds the port; a failed comparison jumps 4 bytes past the end of
/// the program, which the kernel reads as "reject".
pub fn encode_request(
    seq: u32,
    family: u8,
    protocol: u8,
    states: u32,
    port: u16,
) -> [u8; REQUEST_LEN] {
    let mut msg = [0u8; REQUEST_LEN];
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        if let Some(slot) = msg.get_mut(at..at + bytes.len()) {
            slot.copy_from_slice(bytes);
        }
        at += bytes.len();
    };
    // nlmsghdr: length, type, flags, sequence, port id (0: the kernel fills it in).
    put(&(REQUEST_LEN as u32).to_ne_bytes());
    put(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    put(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    put(&seq.to_ne_bytes());
    put(&0u32.to_ne_bytes());
    // inet_diag_req_v2: family, protocol, extensions (none), pad, states.
    put(&[family, protocol, 0, 0]);
    put(&states.to_ne_bytes());
    // inet_diag_sockid: sport and dport are big-endian; addresses and the
    // interface are zero (any); the cookie is INET_DIAG_NOCOOKIE.
    put(&port.to_be_bytes());
    put(&[0; 2 + 16 + 16 + 4]);
    put(&[0xff; 8]);
    // nlattr: length (header + program), type.
    put(&((4 + BYTECODE_LEN) as u16).to_ne_bytes());
    put(&INET_DIAG_REQ_BYTECODE.to_ne_bytes());
    // inet_diag_bc_op { code, yes, no }: yes = next op pair, no = reject.
    for (code, remaining) in [(INET_DIAG_BC_S_GE, BYTECODE_LEN), (INET_DIAG_BC_S_LE, 8)] {
        put(&[code, 8]);
        put(&((remaining + 4) as u16).to_ne_bytes());
        put(&[0, 0]);
        put(&port.to_ne_bytes());
    }
    msg
}

/// Parse one datagram of replies to request `seq`, appending the sockets
/// whose local port is `port` to `rows`. `Ok(true)` once the dump is done.
///
/// Replies to other sequence numbers (a stale answer) are skipped; an error
/// message or a reply that does not have the kernel's layout is an error,
/// never a silently shorter list, because a missed row is a missed holder.
/// The port is checked again here, so a kernel that ignored both filters
/// still gives the right answer, only slower.
pub fn parse_replies(
    data: &[u8],
    seq: u32,
    port: u16,
    rows: &mut Vec<SocketEntry>,
) -> Result<bool, NetlinkError> {
    let mut rest = data;
    while !rest.is_empty() {
        let header = rest
            .get(..NLMSG_HDRLEN)
            .ok_or(NetlinkError::Malformed("truncated header"))?;
        let len = ne_u32(header, 0) as usize;
        let kind = ne_u16(header, 4);
        let msg_seq = ne_u32(header, 8);
        if len < NLMSG_HDRLEN {
            return Err(NetlinkError::Malformed("message length below the header"));
        }
        let msg = rest
            .get(..len)
            .ok_or(NetlinkError::Malformed("message longer than the datagram"))?;
        let payload = msg.get(NLMSG_HDRLEN..).unwrap_or_default();
        // Messages are padded to 4 bytes; the last may end the datagram unpadded.
        rest = rest.get((len + 3) & !3..).unwrap_or_default();
        if msg_seq != seq {
            continue;
        }
        match kind {
            NLMSG_NOOP => {}
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let code = payload
                    .get(..4)
                    .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                    .ok_or(NetlinkError::Malformed("truncated error"))?;
                // An acknowledgement (error 0) ends nothing in a dump.
                if code != 0 {
                    return Err(NetlinkError::Kernel(Errno::from_raw_os_error(-code)));
                }
            }
            SOCK_DIAG_BY_FAMILY => {
                let row = parse_diag_msg(payload)?;
                if row.local.port() == port {
                    rows.push(row);
                }
            }
            _ => return Err(NetlinkError::Malformed("unexpected message type")),
        }
    }
    Ok(false)
}

/// One `struct inet_diag_msg` as a [`SocketEntry`]: the same fields, in the
/// same units, as a `/proc/net` row (uid as seen from our user namespace,
/// the socket inode, the kernel's state number).
fn parse_diag_msg(payload: &[u8]) -> Result<SocketEntry, NetlinkError> {
    let msg = payload
        .get(..MSG_LEN)
        .ok_or(NetlinkError::Malformed("truncated inet_diag_msg"))?;
    let family = msg[0];
    let state = msg[1];
    let sport = u16::from_be_bytes([msg[4], msg[5]]);
    let dport = u16::from_be_bytes([msg[6], msg[7]]);
    let addr = |at: usize| -> Result<IpAddr, NetlinkError> {
        let mut octets = [0u8; 16];
        octets.copy_from_slice(&msg[at..at + 16]);
        match family {
            AF_INET => Ok(IpAddr::V4(Ipv4Addr::new(
                octets[0], octets[1], octets[2], octets[3],
            ))),
            AF_INET6 => Ok(IpAddr::V6(Ipv6Addr::from(octets))),
            _ => Err(NetlinkError::Malformed("address family")),
        }
    };
    Ok(SocketEntry {
        local: SocketAddr::new(addr(8)?, sport),
        remote: SocketAddr::new(addr(24)?, dport),
        state,
        uid: ne_u32(msg, 64),
        inode: u64::from(ne_u32(msg, 68)),
    })
}

fn ne_u16(bytes: &[u8], at: usize) -> u16 {
    let mut b = [0u8; 2];
    if let Some(src) = bytes.get(at..at + 2) {
        b.copy_from_slice(src);
    }
    u16::from_ne_bytes(b)
}

fn ne_u32(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    if let Some(src) = bytes.get(at..at + 4) {
        b.copy_from_slice(src);
    }
    u32::from_ne_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream, UdpSocket};

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn request_layout() {
        let req = encode_request(7, AF_INET6, IPPROTO_TCP, TCP_LISTEN_ONLY, 8787);
        assert_eq!(req.len(), 92);
        assert_eq!(ne_u32(&req, 0), 92);
        assert_eq!(ne_u16(&req, 4), SOCK_DIAG_BY_FAMILY);
        assert_eq!(ne_u16(&req, 6), 0x301);
        assert_eq!(ne_u32(&req, 8), 7);
        assert_eq!(&req[16..20], &[AF_INET6, IPPROTO_TCP, 0, 0]);
        assert_eq!(ne_u32(&req, 20), 1 << 10);
        // idiag_sport, big-endian; dport and addresses zero; no cookie.
        assert_eq!(&req[24..26], &8787u16.to_be_bytes());
        assert!(req[26..64].iter().all(|&b| b == 0));
        assert_eq!(&req[64..72], &[0xff; 8]);
        // The attribute and its program.
        assert_eq!(ne_u16(&req, 72), 20);
        assert_eq!(ne_u16(&req, 74), INET_DIAG_REQ_BYTECODE);
        assert_eq!(&req[76..80], &[INET_DIAG_BC_S_GE, 8, 20, 0]);
        assert_eq!(ne_u16(&req, 82), 8787);
        assert_eq!(&req[84..88], &[INET_DIAG_BC_S_LE, 8, 12, 0]);
        assert_eq!(ne_u16(&req, 90), 8787);
    }

    /// Run the bytecode the way `inet_diag_bc_run` does, to prove the jump
    /// offsets accept exactly one port.
    fn run_bytecode(program: &[u8], sport: u16) -> bool {
        let mut at = 0usize;
        let mut len = program.len() as isize;
        while len > 0 {
            let op = &program[at..];
            let yes = match op[0] {
                INET_DIAG_BC_S_GE => sport >= ne_u16(op, 6),
                INET_DIAG_BC_S_LE => sport <= ne_u16(op, 6),
                other => panic!("unexpected op {other}"),
            };
            let step = if yes {
                op[1] as usize
            } else {
                ne_u16(op, 2) as usize
            };
            at += step;
            len -= step as isize;
        }
        len == 0
    }

    #[test]
    fn bytecode_accepts_only_the_port() {
        let req = encode_request(1, AF_INET, IPPROTO_UDP, UDP_ALL_STATES, 5353);
        let program = &req[76..];
        assert!(run_bytecode(program, 5353));
        for other in [0, 1, 5352, 5354, u16::MAX] {
            assert!(!run_bytecode(program, other), "{other}");
        }
    }

    /// Two datagrams recorded from Linux 6.18 (x86_64, as root) answering
    /// request 9, `AF_INET` TCP in every state, on port 49193: a LISTEN
    /// socket on 127.0.0.1 (inode 400678) and the connection it accepted
    /// from port 52488 (inode 400680), each with the attributes the kernel
    /// always adds; then `NLMSG_DONE` on its own.
    const RECORDED: &str = "\
        7c0000001400020009000000b1620000020a0000c02900007f000001000000000000000000000000\
        0000000000000000000000000000000000000000a19f000000000000000000000000000080000000\
        00000000261d0600050008000000000008000f00000000000c001500010000000000000006001600\
        520000007c0000001400020009000000b162000002010000c029cd087f0000010000000000000000\
        000000007f00000100000000000000000000000000000000a29f0000000000000000000000000000\
        0000000000000000281d0600050008000000000008000f00000000000c0015000100000000000000\
        0600160052000000";
    const RECORDED_DONE: &str = "140000000300020009000000b162000000000000";

    fn hex(text: &str) -> Vec<u8> {
        let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    }

    fn recorded_reply() -> Vec<u8> {
        let mut reply = hex(RECORDED);
        reply.extend(hex(RECORDED_DONE));
        reply
    }

    #[test]
    fn replies_become_rows() {
        let mut rows = Vec::new();
        assert_eq!(
            parse_replies(&hex(RECORDED), 9, 49193, &mut rows),
            Ok(false)
        );
        assert_eq!(
            parse_replies(&hex(RECORDED_DONE), 9, 49193, &mut rows),
            Ok(true)
        );
        assert_eq!(
            rows,
            vec![
                SocketEntry {
                    local: addr("127.0.0.1:49193"),
                    remote: addr("0.0.0.0:0"),
                    state: 10,
                    uid: 0,
                    inode: 400678
                },
                SocketEntry {
                    local: addr("127.0.0.1:49193"),
                    remote: addr("127.0.0.1:52488"),
                    state: 1,
                    uid: 0,
                    inode: 400680
                },
            ]
        );
        // The same bytes for another port: filtered here too.
        let mut rows = Vec::new();
        assert_eq!(parse_replies(&recorded_reply(), 9, 80, &mut rows), Ok(true));
        assert!(rows.is_empty());
    }

    #[test]
    fn replies_to_another_request_are_skipped() {
        let mut rows = Vec::new();
        assert_eq!(
            parse_replies(&recorded_reply(), 8, 49193, &mut rows),
            Ok(false)
        );
        assert!(rows.is_empty());
    }

    #[test]
    fn errors_and_malformed_replies() {
        let mut error = Vec::new();
        error.extend_from_slice(&36u32.to_ne_bytes());
        error.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        error.extend_from_slice(&0u16.to_ne_bytes());
        error.extend_from_slice(&3u32.to_ne_bytes());
        error.extend_from_slice(&0u32.to_ne_bytes());
        error.extend_from_slice(&(-2i32).to_ne_bytes());
        error.extend_from_slice(&[0; 16]);
        assert_eq!(
            parse_replies(&error, 3, 1, &mut Vec::new()),
            Err(NetlinkError::Kernel(Errno::NOENT))
        );
        let reply = recorded_reply();
        for cut in [5, 16 + 40, 123, 124 + 16 + 71] {
            assert!(
                matches!(
                    parse_replies(&reply[..cut], 9, 49193, &mut Vec::new()),
                    Err(NetlinkError::Malformed(_))
                ),
                "cut at {cut}"
            );
        }
        let mut bad_len = reply.clone();
        bad_len[..4].copy_from_slice(&3u32.to_ne_bytes());
        assert!(parse_replies(&bad_len, 9, 49193, &mut Vec::new()).is_err());
        let mut bad_family = reply;
        bad_family[16] = 1;
        assert_eq!(
            parse_replies(&bad_family, 9, 49193, &mut Vec::new()),
            Err(NetlinkError::Malformed("address family"))
        );
    }

    // ---- the real kernel ---------------------------------------------

    fn netlink_or_skip() -> bool {
        match query(1, Protocol::Tcp, Rows::Holding) {
            Ok(_) => true,
            Err(err) => {
                eprintln!("netlink sock_diag unavailable here, skipping: {err}");
                false
            }
        }
    }

    #[test]
    fn kernel_filters_by_port_and_state() {
        if !netlink_or_skip() {
            return;
        }
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = listener.local_addr().unwrap();
        let _other = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(server).unwrap();
        let (_accepted, _) = listener.accept().unwrap();

        let holding = query(server.port(), Protocol::Tcp, Rows::Holding).unwrap();
        assert_eq!(holding.len(), 1);
        assert_eq!(holding[0].local, server);
        assert_eq!(holding[0].state, SocketEntry::TCP_LISTEN);
        assert_eq!(holding[0].uid, rustix::process::geteuid().as_raw());

        let all = query(server.port(), Protocol::Tcp, Rows::All).unwrap();
        let mut states: Vec<u8> = all.iter().map(|r| r.state).collect();
        states.sort_unstable();
        assert_eq!(states, [1, SocketEntry::TCP_LISTEN]);
        let accepted = all.iter().find(|r| r.state == 1).unwrap();
        assert_eq!(accepted.remote, client.local_addr().unwrap());

        // The client's own port holds nothing: its row is ESTABLISHED. (Other
        // connections on the host may share the port number, so look for ours.)
        let client_port = client.local_addr().unwrap().port();
        let client_rows = query(client_port, Protocol::Tcp, Rows::All).unwrap();
        assert!(client_rows.iter().all(|r| r.local.port() == client_port));
        let ours: Vec<_> = client_rows.iter().filter(|r| r.remote == server).collect();
        assert_eq!(ours.len(), 1);
        assert_eq!(ours[0].state, 1);
        assert!(query(client_port, Protocol::Tcp, Rows::Holding)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn udp_and_ipv6_rows() {
        if !netlink_or_skip() {
            return;
        }
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        let rows = query(port, Protocol::Udp, Rows::Holding).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].local, udp.local_addr().unwrap());
        // TCP is another table: the UDP socket is not in it.
        let tcp = query(port, Protocol::Tcp, Rows::All).unwrap();
        assert!(tcp.iter().all(|r| r.inode != rows[0].inode));

        let Ok(v6) = TcpListener::bind("[::1]:0") else {
            eprintln!("no IPv6 loopback, skipping the IPv6 half");
            return;
        };
        let rows = query(
            v6.local_addr().unwrap().port(),
            Protocol::Tcp,
            Rows::Holding,
        )
        .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].local, v6.local_addr().unwrap());
        assert_eq!(rows[0].remote, addr("[::]:0"));
    }

    #[test]
    fn fallback_is_remembered_per_protocol() {
        let discovery = Netlink::default();
        assert!(!discovery.uses_fallback(Protocol::Tcp));
        discovery
            .fallback_flag(Protocol::Tcp)
            .store(true, Ordering::Relaxed);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // Served by /proc/net now, with the same answer.
        let rows = discovery.rows(port, Protocol::Tcp, Rows::Holding).unwrap();
        let rows: Vec<_> = rows
            .into_iter()
            .filter(|r| r.holds(Protocol::Tcp))
            .collect();
        assert_eq!(rows.len(), 1);
        assert!(discovery.uses_fallback(Protocol::Tcp));
        assert!(!discovery.uses_fallback(Protocol::Udp));
    }
}
