//! `/proc/net/{tcp,tcp6,udp,udp6}`: the socket table as the kernel prints it
//! for every socket on the host. The reference the netlink source is tested
//! against, and its fallback where netlink is refused.
//!
//! The parsers are pure functions on the text the kernel prints, tested on
//! recorded output (`tests/fixtures/proc/`).

use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use super::{Rows, SocketTable};
use crate::discovery::proc::parse::parse_decimal;
use crate::discovery::proc::DEFAULT_PROC_ROOT;
use crate::discovery::DiscoveryError;
use crate::model::{Protocol, SocketEntry};

/// Parse one of `/proc/net/{tcp,tcp6,udp,udp6}` into its rows.
///
/// `path` only names the file in errors. The header line is skipped. Any row
/// that does not have the kernel's shape is a [`DiscoveryError::Parse`]:
/// silently skipping it could hide a holder and lead a policy to act as if
/// the port were free.
pub fn parse_net_table(text: &str, path: &str) -> Result<Vec<SocketEntry>, DiscoveryError> {
    text.lines()
        .skip(1)
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            parse_net_row(line).ok_or_else(|| DiscoveryError::Parse {
                path: path.to_owned(),
                line: line.to_owned(),
            })
        })
        .collect()
}

/// One table row: `sl: local remote st tx:rx tr:when retrnsmt uid timeout inode ...`.
fn parse_net_row(line: &str) -> Option<SocketEntry> {
    let mut fields = line.split_ascii_whitespace();
    let slot = fields.next()?;
    if !slot.ends_with(':') {
        return None;
    }
    let local = parse_net_addr(fields.next()?)?;
    let remote = parse_net_addr(fields.next()?)?;
    let state = parse_hex_u8(fields.next()?)?;
    // tx_queue:rx_queue, tr:tm->when, retrnsmt: not needed.
    let mut fields = fields.skip(3);
    let uid = parse_decimal(fields.next()?)?;
    let _timeout = fields.next()?;
    let inode = parse_decimal(fields.next()?)?;
    Some(SocketEntry {
        local,
        remote,
        state,
        uid,
        inode,
    })
}

/// `ADDR:PORT` where ADDR is 8 (IPv4) or 32 (IPv6) hex digits.
///
/// The kernel prints the address as 32-bit words in host byte order
/// (`%08X` of the in-memory `__be32`), so each word is converted back with
/// `to_ne_bytes`: that yields the network-order bytes on any host.
fn parse_net_addr(field: &str) -> Option<SocketAddr> {
    let (addr, port) = field.split_once(':')?;
    if port.len() != 4 {
        return None;
    }
    let port = u16::from_str_radix(hex_digits(port)?, 16).ok()?;
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(host_word(addr)?.to_ne_bytes())),
        32 => {
            let mut octets = [0u8; 16];
            for (i, chunk) in octets.chunks_exact_mut(4).enumerate() {
                let word = host_word(addr.get(i * 8..i * 8 + 8)?)?;
                chunk.copy_from_slice(&word.to_ne_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Eight hex digits printed from a host-order `u32`.
fn host_word(hex: &str) -> Option<u32> {
    if hex.len() != 8 {
        return None;
    }
    u32::from_str_radix(hex_digits(hex)?, 16).ok()
}

fn parse_hex_u8(field: &str) -> Option<u8> {
    u8::from_str_radix(hex_digits(field)?, 16).ok()
}

/// `from_str_radix` accepts a leading `+`; the kernel never prints one, so a
/// field with anything but hex digits is malformed.
fn hex_digits(field: &str) -> Option<&str> {
    (!field.is_empty() && field.bytes().all(|b| b.is_ascii_hexdigit())).then_some(field)
}

/// The socket tables under a procfs mount (`/proc`, or a directory that
/// imitates it in tests).
#[derive(Debug, Clone)]
pub struct ProcNet {
    root: PathBuf,
}

impl Default for ProcNet {
    fn default() -> Self {
        Self::new(DEFAULT_PROC_ROOT)
    }
}

impl ProcNet {
    /// The tables of the procfs mounted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The procfs root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The rows of the socket tables for `proto` whose local port is `port`,
    /// IPv4 then IPv6.
    ///
    /// The tables are streamed line by line and only matching rows are kept:
    /// on a busy host they are megabytes of text (60,000 connections are
    /// about 9 MB), and holding them whole would dominate portguard's memory.
    /// Every row is still parsed, so a malformed one is an error wherever it
    /// is. A missing IPv6 table means IPv6 is disabled, which is not an
    /// error; any other failure is, because an unread table could hide a
    /// holder.
    pub fn port_rows(
        &self,
        port: u16,
        proto: Protocol,
    ) -> Result<Vec<SocketEntry>, DiscoveryError> {
        let (v4, v6) = match proto {
            Protocol::Tcp => ("net/tcp", "net/tcp6"),
            Protocol::Udp => ("net/udp", "net/udp6"),
        };
        let mut rows = Vec::new();
        for (file, optional) in [(v4, false), (v6, true)] {
            let path = self.root.join(file);
            let failed = |source| DiscoveryError::SocketTable {
                path: path.display().to_string(),
                source,
            };
            let file = match fs::File::open(&path) {
                Ok(file) => file,
                Err(err) if optional && err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(failed(err)),
            };
            let mut reader = io::BufReader::with_capacity(64 * 1024, file);
            let mut line = String::new();
            let mut header = true;
            loop {
                line.clear();
                match io::BufRead::read_line(&mut reader, &mut line) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(err) => return Err(failed(err)),
                }
                if std::mem::take(&mut header) || line.trim().is_empty() {
                    continue;
                }
                let row = parse_net_row(&line).ok_or_else(|| DiscoveryError::Parse {
                    path: path.display().to_string(),
                    line: line.trim_end().to_owned(),
                })?;
                if row.local.port() == port {
                    rows.push(row);
                }
            }
        }
        Ok(rows)
    }
}

impl SocketTable for ProcNet {
    /// Every row on the port, whatever `rows` asks for: the kernel formats
    /// them all anyway.
    fn rows(
        &self,
        port: u16,
        proto: Protocol,
        _rows: Rows,
    ) -> Result<Vec<SocketEntry>, DiscoveryError> {
        self.port_rows(port, proto)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::sockets::split_holding;
    use std::net::SocketAddrV6;

    const NET_TCP: &str = include_str!("../../../tests/fixtures/proc/net_tcp");
    const NET_TCP6: &str = include_str!("../../../tests/fixtures/proc/net_tcp6");
    const NET_UDP: &str = include_str!("../../../tests/fixtures/proc/net_udp");
    const NET_UDP6: &str = include_str!("../../../tests/fixtures/proc/net_udp6");
    const NET_TCP_NOBODY: &str = include_str!("../../../tests/fixtures/proc/net_tcp_nobody");
    const NET_TCP6_DUALSTACK: &str =
        include_str!("../../../tests/fixtures/proc/net_tcp6_dualstack");
    const NET_UDP_CONNECTED: &str = include_str!("../../../tests/fixtures/proc/net_udp_connected");
    const NET_UDP6_EMPTY: &str = include_str!("../../../tests/fixtures/proc/net_udp6_empty");

    fn v4(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn entry(local: &str, remote: &str, state: u8, uid: u32, inode: u64) -> SocketEntry {
        SocketEntry {
            local: v4(local),
            remote: v4(remote),
            state,
            uid,
            inode,
        }
    }

    #[test]
    fn tcp_table_ipv4_listen_and_established() {
        let rows = parse_net_table(NET_TCP, "/proc/net/tcp").unwrap();
        assert_eq!(
            rows,
            vec![
                entry("0.0.0.0:2024", "0.0.0.0:0", 0x0A, 0, 1604),
                entry("127.0.0.1:35981", "0.0.0.0:0", 0x0A, 0, 4665),
                entry("127.0.0.1:35981", "127.0.0.1:39034", 0x01, 0, 5358),
                entry("127.0.0.1:39034", "127.0.0.1:35981", 0x01, 0, 5357),
            ]
        );
    }

    #[test]
    fn tcp6_table_loopback_listener() {
        let rows = parse_net_table(NET_TCP6, "/proc/net/tcp6").unwrap();
        assert_eq!(rows, vec![entry("[::1]:32825", "[::]:0", 0x0A, 0, 4666)]);
    }

    #[test]
    fn tcp6_table_wildcard_and_ipv4_mapped() {
        let rows = parse_net_table(NET_TCP6_DUALSTACK, "/proc/net/tcp6").unwrap();
        assert_eq!(
            rows,
            vec![
                entry("[::]:52509", "[::]:0", 0x0A, 65534, 4869),
                entry(
                    "[::ffff:127.0.0.1]:52509",
                    "[::ffff:127.0.0.1]:58370",
                    0x01,
                    65534,
                    4871
                ),
            ]
        );
    }

    #[test]
    fn tcp_table_time_wait_row_and_foreign_uid() {
        let rows = parse_net_table(NET_TCP_NOBODY, "/proc/net/tcp").unwrap();
        assert_eq!(
            rows,
            vec![
                entry("0.0.0.0:2024", "0.0.0.0:0", 0x0A, 0, 1604),
                entry("127.0.0.1:58370", "127.0.0.1:52509", 0x01, 65534, 4870),
                // TIME_WAIT: no owner any more, inode 0, fewer columns.
                entry("127.0.0.1:39034", "127.0.0.1:35981", 0x06, 0, 0),
            ]
        );
        assert_eq!(rows[2].state_name(), "TIME_WAIT");
    }

    #[test]
    fn udp_tables() {
        assert_eq!(
            parse_net_table(NET_UDP, "/proc/net/udp").unwrap(),
            vec![entry("127.0.0.1:60051", "0.0.0.0:0", 0x07, 0, 4667)]
        );
        assert_eq!(
            parse_net_table(NET_UDP6, "/proc/net/udp6").unwrap(),
            vec![entry("[::1]:36381", "[::]:0", 0x07, 0, 4668)]
        );
        assert_eq!(
            parse_net_table(NET_UDP_CONNECTED, "/proc/net/udp").unwrap(),
            vec![entry("127.0.0.1:52298", "127.0.0.1:53", 0x01, 65534, 4872)]
        );
        assert_eq!(
            parse_net_table(NET_UDP6_EMPTY, "/proc/net/udp6").unwrap(),
            vec![]
        );
        assert_eq!(parse_net_table("", "/proc/net/udp6").unwrap(), vec![]);
    }

    #[test]
    fn ipv6_words_are_in_host_order() {
        // 2001:db8::1234:5678 as the kernel prints it on little-endian.
        let text = "header\n   0: B80D0120000000000000000078563412:0050 \
                    00000000000000000000000000000000:0000 0A 00000000:00000000 \
                    00:00000000 00000000  1000        0 99 1 0000000000000000 100 0 0 10 0\n";
        let rows = parse_net_table(text, "t").unwrap();
        let expected = SocketAddr::V6(SocketAddrV6::new(
            "2001:db8::1234:5678".parse::<Ipv6Addr>().unwrap(),
            80,
            0,
            0,
        ));
        assert_eq!(rows[0].local, expected);
        assert_eq!((rows[0].uid, rows[0].inode), (1000, 99));
    }

    #[test]
    fn malformed_rows_are_parse_errors() {
        let good = "   1: 0100007F:8C8D 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4665 1 0 100 0 0 10 0";
        assert_eq!(
            parse_net_table(&format!("h\n{good}\n"), "p").unwrap().len(),
            1
        );
        let bad = [
            // 7-digit address
            "   1: 100007F:8C8D 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 4665",
            // non-hex address
            "   1: 0100007G:8C8D 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 4665",
            // sign in the port
            "   1: 0100007F:+C8D 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 4665",
            // missing port
            "   1: 0100007F 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 4665",
            // state out of range
            "   1: 0100007F:8C8D 00000000:0000 10A 00000000:00000000 00:00000000 00000000 0 0 4665",
            // uid not decimal
            "   1: 0100007F:8C8D 00000000:0000 0A 00000000:00000000 00:00000000 00000000 x 0 4665",
            // inode missing
            "   1: 0100007F:8C8D 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0",
            // no slot
            "0100007F:8C8D 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 4665",
            // 31-digit IPv6
            "   1: 0000000000000000000000001000000:8039 00000000000000000000000000000000:0000 0A 0:0 0:0 0 0 0 4666",
        ];
        for line in bad {
            match parse_net_table(&format!("h\n{good}\n{line}\n"), "/proc/net/tcp") {
                Err(DiscoveryError::Parse { path, line: got }) => {
                    assert_eq!(path, "/proc/net/tcp");
                    assert_eq!(got, line);
                }
                other => panic!("{line:?} parsed as {other:?}"),
            }
        }
    }

    #[test]
    fn split_by_local_port_and_state() {
        let mut rows = parse_net_table(NET_TCP, "tcp").unwrap();
        rows.extend(parse_net_table(NET_TCP_NOBODY, "tcp").unwrap());
        let (holding, others) = split_holding(rows.clone(), 35981, Protocol::Tcp);
        assert_eq!(holding.iter().map(|s| s.inode).collect::<Vec<_>>(), [4665]);
        // The accepted connection; not the client whose *remote* port it is.
        assert_eq!(others.iter().map(|s| s.inode).collect::<Vec<_>>(), [5358]);

        let (holding, others) = split_holding(rows.clone(), 39034, Protocol::Tcp);
        assert!(holding.is_empty());
        assert_eq!(
            others.iter().map(|s| s.inode).collect::<Vec<_>>(),
            [5357, 0]
        );

        let (holding, others) = split_holding(rows, 1, Protocol::Tcp);
        assert!(holding.is_empty() && others.is_empty());

        // UDP: any bound socket holds, connected or not.
        let udp = parse_net_table(NET_UDP_CONNECTED, "udp").unwrap();
        let (holding, others) = split_holding(udp, 52298, Protocol::Udp);
        assert_eq!(holding.iter().map(|s| s.inode).collect::<Vec<_>>(), [4872]);
        assert!(others.is_empty());
    }
}
