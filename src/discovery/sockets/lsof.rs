//! Discovery through `lsof -F`: the portable path (macOS, the BSDs), where
//! there is no `/proc` and no sock_diag.
//!
//! One `lsof -nP -w +c 0 -iTCP:PORT -F ...` lists every open socket on the
//! port with its process (pid, parent, uid, login, command name) in lsof's
//! field format, which [`parse_fields`] reads; that parser is pure and
//! tested on recorded output. Only when the port is held are two more
//! commands run, for the holders alone: `ps -o pid= -o etime= -o args=` for
//! argv and age (and the parents' argv, for "orphaned"), and
//! `lsof -d txt` for the executable.
//!
//! What lsof cannot say, and what this backend does about it:
//!
//! - **Sockets of processes lsof may not inspect** (another user's, when not
//!   root) are simply absent from its output, and lsof has no socket table
//!   to show them pid-less. So when lsof shows nothing on the port and a
//!   bind probe fails, the port is reported held by a pid-less holder whose
//!   uid is `u32::MAX` (`(uid_t)-1`, no user): no `user` criterion can match
//!   it, so no rule acts on it, and the reason says to run as root.
//! - **The socket's own uid**: lsof reports the process's uid, which is the
//!   same unless the process changed user after creating the socket.
//! - **argv** comes from `ps`, joined by spaces; it is split on single
//!   spaces, which gives back the same joined string a policy matches, but
//!   not the original word boundaries of an argument with spaces. `ps` also
//!   shows control characters in argv as `?`.
//! - **Start time** (the identity checked before a signal) is read from
//!   `/proc` on Linux. Elsewhere it is `ps -o lstart` (one-second
//!   resolution; see `proc::portable`); when `ps` cannot tell, the identity
//!   is unknown and `terminate` refuses to signal (exit 5) rather than risk
//!   a recycled pid.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;

use crate::discovery::{Discovery, DiscoveryError, Scope};
use crate::model::{addrs_and_inodes, Holder, PortState, Protocol, SocketEntry, Unknown};

/// The uid reported for an owner lsof cannot see: `(uid_t)-1`, which no
/// account has.
pub const UNKNOWN_UID: u32 = u32::MAX;

/// One process of lsof's field output, with its files on the port.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LsofProcess {
    /// `p`: process id.
    pub pid: u32,
    /// `R`: parent process id.
    pub ppid: Option<u32>,
    /// `u`: user id.
    pub uid: Option<u32>,
    /// `L`: login name.
    pub login: Option<String>,
    /// `c`: command name (`+c 0`: as long as the system keeps it).
    pub command: Option<String>,
    /// The sockets this process has open on the port, one per fd.
    pub files: Vec<LsofFile>,
}

/// One open socket (a file set of lsof's field output).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LsofFile {
    /// `f`: the fd (`3`, or `cwd`/`txt` for non-fd files).
    pub fd: String,
    /// `t`: `IPv4` or `IPv6`.
    pub family: String,
    /// `P`: `TCP` or `UDP`.
    pub protocol: String,
    /// `n`: `local` or `local->remote`, numeric (`-nP`).
    pub name: String,
    /// `d`: on Linux the socket inode; on macOS/BSD a kernel address (`0x…`).
    pub device: Option<String>,
    /// `T` with `ST=`: the TCP state (`LISTEN`, `ESTABLISHED`, ...).
    pub tcp_state: Option<String>,
}

/// Parse lsof's field output (`-F pcRuLfdtPnT`, one field per line: a
/// letter then the value).
///
/// A `p` line starts a process, an `f` line starts one of its files; every
/// other field belongs to the latest of those. Unknown fields are ignored
/// (lsof versions add some), but a field before any `p`, or a pid that is not
/// a number, is an error: output that does not parse must not read as
/// "nobody holds the port".
pub fn parse_fields(text: &str) -> Result<Vec<LsofProcess>, String> {
    let mut processes: Vec<LsofProcess> = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let mut chars = line.chars();
        let Some(field) = chars.next() else { continue };
        let value = chars.as_str();
        if field == 'p' {
            let pid = value
                .parse()
                .map_err(|_| format!("bad pid field {line:?}"))?;
            processes.push(LsofProcess {
                pid,
                ..LsofProcess::default()
            });
            continue;
        }
        let process = processes
            .last_mut()
            .ok_or_else(|| format!("field {line:?} before any process"))?;
        match field {
            'R' => process.ppid = value.parse().ok(),
            'u' => process.uid = value.parse().ok(),
            'L' => process.login = Some(value.to_owned()),
            'c' => process.command = Some(value.to_owned()),
            'f' => process.files.push(LsofFile {
                fd: value.to_owned(),
                ..LsofFile::default()
            }),
            _ => {
                let Some(file) = process.files.last_mut() else {
                    continue;
                };
                match field {
                    't' => file.family = value.to_owned(),
                    'P' => file.protocol = value.to_owned(),
                    'n' => file.name = value.to_owned(),
                    'd' => file.device = Some(value.to_owned()),
                    'T' => {
                        if let Some(state) = value.strip_prefix("ST=") {
                            file.tcp_state = Some(state.to_owned());
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(processes)
}

/// `local` and `remote` of an lsof socket name: `127.0.0.1:80`, `*:80`,
/// `[::1]:80`, `10.0.0.1:5->10.0.0.2:80`.
///
/// The wildcard becomes `0.0.0.0` or `::` by family, an absent remote the
/// family's unspecified address and port 0, and an IPv4 address on an IPv6
/// socket (a dual-stack socket's IPv4 peer) the IPv4-mapped address: the
/// same forms `/proc/net` gives, so both backends agree.
pub fn parse_name(name: &str, ipv6: bool) -> Option<(SocketAddr, SocketAddr)> {
    let (local, remote) = match name.split_once("->") {
        Some((local, remote)) => (local, Some(remote)),
        None => (name, None),
    };
    let unspecified = if ipv6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    };
    let endpoint = |text: &str| -> Option<SocketAddr> {
        let (host, port) = text.rsplit_once(':')?;
        let port: u16 = port.parse().ok()?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        // A zone (`fe80::1%lo0`) names the interface; the table has no zones.
        let host = host.split_once('%').map_or(host, |(addr, _)| addr);
        let ip = if host == "*" {
            unspecified
        } else {
            match host.parse::<IpAddr>().ok()? {
                IpAddr::V4(v4) if ipv6 => IpAddr::V6(v4.to_ipv6_mapped()),
                ip => ip,
            }
        };
        Some(SocketAddr::new(ip, port))
    };
    let remote = match remote {
        Some(text) => endpoint(text)?,
        None => SocketAddr::new(unspecified, 0),
    };
    Some((endpoint(local)?, remote))
}

/// The kernel state number for an lsof TCP state name (Linux and BSD
/// spellings); `None` for a name it does not know.
pub fn tcp_state_number(name: &str) -> Option<u8> {
    Some(match name {
        "ESTABLISHED" => 0x01,
        "SYN_SENT" => 0x02,
        "SYN_RECV" | "SYN_RECEIVED" | "SYN_RCVD" => 0x03,
        "FIN_WAIT1" | "FIN_WAIT_1" => 0x04,
        "FIN_WAIT2" | "FIN_WAIT_2" => 0x05,
        "TIME_WAIT" => 0x06,
        "CLOSE" | "CLOSED" => 0x07,
        "CLOSE_WAIT" => 0x08,
        "LAST_ACK" => 0x09,
        "LISTEN" => 0x0A,
        "CLOSING" => 0x0B,
        _ => return None,
    })
}

/// A socket's identity: the decimal inode on Linux, a hex kernel address
/// (`0x…`) elsewhere.
fn parse_device(device: &str) -> Option<u64> {
    match device.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => device.parse().ok(),
    }
}

/// The sockets lsof listed on local port `port`, once each (a socket shared
/// by forked workers appears once per process), in order of appearance.
///
/// A connection *to* the port from elsewhere is listed by `lsof -i :PORT`
/// too; only the local port counts, as in the kernel's tables.
pub fn sockets_on_port(processes: &[LsofProcess], port: u16, proto: Protocol) -> Vec<SocketEntry> {
    let mut sockets: Vec<SocketEntry> = Vec::new();
    for process in processes {
        for file in &process.files {
            let Some(entry) = socket_entry(process, file, port, proto) else {
                continue;
            };
            let duplicate = sockets.iter().any(|s| {
                (entry.inode != 0 && s.inode == entry.inode) || (entry.inode == 0 && s == &entry)
            });
            if !duplicate {
                sockets.push(entry);
            }
        }
    }
    sockets
}

fn socket_entry(
    process: &LsofProcess,
    file: &LsofFile,
    port: u16,
    proto: Protocol,
) -> Option<SocketEntry> {
    if !file.protocol.eq_ignore_ascii_case(proto.as_str()) {
        return None;
    }
    let (local, remote) = parse_name(&file.name, file.family == "IPv6")?;
    if local.port() != port {
        return None;
    }
    let state = match proto {
        Protocol::Tcp => tcp_state_number(file.tcp_state.as_deref()?)?,
        // As /proc/net/udp shows them: connected 1, otherwise 7.
        Protocol::Udp if remote.port() != 0 => 0x01,
        Protocol::Udp => 0x07,
    };
    Some(SocketEntry {
        local,
        remote,
        state,
        uid: process.uid.unwrap_or(UNKNOWN_UID),
        inode: file.device.as_deref().and_then(parse_device).unwrap_or(0),
    })
}

/// What `ps -o pid= -o etime= -o args=` says about one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PsRow {
    /// Process id.
    pub pid: u32,
    /// Elapsed time since the process started, in milliseconds (ps has
    /// whole seconds).
    pub age_ms: Option<u64>,
    /// The command line, as ps shows it.
    pub args: String,
}

/// Parse `ps -o pid= -o etime= -o args=` output: pid, `[[dd-]hh:]mm:ss`,
/// then the command line to the end of the line.
pub fn parse_ps(text: &str) -> Vec<PsRow> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim_start();
            let (pid, rest) = line.split_once(char::is_whitespace)?;
            let rest = rest.trim_start();
            let (etime, args) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            Some(PsRow {
                pid: pid.parse().ok()?,
                age_ms: parse_etime(etime).map(|s| s * 1000),
                args: args.trim_start().to_owned(),
            })
        })
        .collect()
}

/// `[[dd-]hh:]mm:ss` in seconds.
pub fn parse_etime(text: &str) -> Option<u64> {
    let (days, clock) = match text.split_once('-') {
        Some((days, clock)) => (days.parse::<u64>().ok()?, clock),
        None => (0, text),
    };
    let mut secs = 0u64;
    let parts: Vec<&str> = clock.split(':').collect();
    if !(2..=3).contains(&parts.len()) {
        return None;
    }
    for part in parts {
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        secs = secs
            .checked_mul(60)?
            .checked_add(part.parse::<u64>().ok()?)?;
    }
    days.checked_mul(86_400)?.checked_add(secs)
}

/// [`Discovery`] that runs `lsof` (and `ps`) from `PATH`.
#[derive(Debug, Clone)]
pub struct LsofDiscovery {
    lsof: PathBuf,
    ps: PathBuf,
}

impl Default for LsofDiscovery {
    fn default() -> Self {
        Self::with_programs("lsof", "ps")
    }
}

impl LsofDiscovery {
    /// Run these programs instead of `lsof` and `ps` from `PATH` (tests use
    /// stand-ins that print recorded output).
    pub fn with_programs(lsof: impl Into<PathBuf>, ps: impl Into<PathBuf>) -> Self {
        Self {
            lsof: lsof.into(),
            ps: ps.into(),
        }
    }

    /// lsof's view of every socket on `port`, any state.
    fn list(&self, port: u16, proto: Protocol) -> Result<Vec<LsofProcess>, DiscoveryError> {
        let selector = match proto {
            Protocol::Tcp => format!("-iTCP:{port}"),
            Protocol::Udp => format!("-iUDP:{port}"),
        };
        let out = self.run_lsof(&["-nP", "-w", "+c", "0", &selector, "-F", "pcRuLfdtPnT"])?;
        parse_fields(&out).map_err(|message| tool_error("lsof", message))
    }

    /// Run lsof; "no files found" (exit 1 with nothing on stderr, `-w`
    /// silences warnings) is an empty list, not an error.
    fn run_lsof(&self, args: &[&str]) -> Result<String, DiscoveryError> {
        let output = Command::new(&self.lsof)
            .args(args)
            .env("LC_ALL", "C")
            .output()
            .map_err(|err| {
                tool_error(
                    "lsof",
                    if err.kind() == std::io::ErrorKind::NotFound {
                        format!(
                            "{} not found: install lsof, or use another discovery backend",
                            self.lsof.display()
                        )
                    } else {
                        format!("cannot run {}: {err}", self.lsof.display())
                    },
                )
            })?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        let nothing_found = output.status.code() == Some(1) && stderr.trim().is_empty();
        if !output.status.success() && !nothing_found {
            return Err(tool_error(
                "lsof",
                format!("exited with {}: {}", output.status, stderr.trim()),
            ));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// argv and age of `pids` from `ps`; missing for processes that exited.
    fn ps(&self, pids: &[u32]) -> BTreeMap<u32, PsRow> {
        if pids.is_empty() {
            return BTreeMap::new();
        }
        let list = pids
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let output = Command::new(&self.ps)
            .args([
                "-ww", "-o", "pid=", "-o", "etime=", "-o", "args=", "-p", &list,
            ])
            .env("LC_ALL", "C")
            .output();
        // ps exits 1 when some pid is gone; whatever it printed still holds.
        let text = output
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        parse_ps(&text)
            .into_iter()
            .map(|row| (row.pid, row))
            .collect()
    }

    /// The executable of each of `pids`: the first `txt` file lsof lists.
    fn executables(&self, pids: &[u32]) -> BTreeMap<u32, String> {
        let list = pids
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let Ok(out) = self.run_lsof(&["-nP", "-w", "-a", "-p", &list, "-d", "txt", "-F", "pn"])
        else {
            return BTreeMap::new();
        };
        let mut exes = BTreeMap::new();
        let mut pid = None;
        for line in out.lines() {
            if let Some(p) = line.strip_prefix('p') {
                pid = p.parse::<u32>().ok();
            } else if let (Some(name), Some(p)) = (line.strip_prefix('n'), pid) {
                exes.entry(p).or_insert_with(|| name.to_owned());
            }
        }
        exes
    }

    /// The port looks free to lsof but cannot be bound: something lsof may
    /// not inspect holds it.
    fn invisible_holder(&self, port: u16, proto: Protocol) -> (SocketEntry, Holder) {
        let state = match proto {
            Protocol::Tcp => SocketEntry::TCP_LISTEN,
            Protocol::Udp => 0x07,
        };
        let any = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
        let socket = SocketEntry {
            local: any,
            remote: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            state,
            uid: UNKNOWN_UID,
            inode: 0,
        };
        let holder = Holder::unseen(UNKNOWN_UID, vec![any], vec![0], Unknown::LsofCannotInspect);
        (socket, holder)
    }
}

fn tool_error(tool: &str, message: impl Into<String>) -> DiscoveryError {
    DiscoveryError::Tool {
        tool: tool.to_owned(),
        message: message.into(),
    }
}

/// Start time in the units the process table checks before a signal.
#[cfg(target_os = "linux")]
fn start_ticks(pid: u32) -> Option<u64> {
    use crate::discovery::ProcessTable;
    crate::discovery::proc::ProcfsTable::default()
        .identity(pid)
        .map(|id| id.start_ticks)
}

/// Start time as `ps` prints it, hashed (see the portable proc layer).
#[cfg(not(target_os = "linux"))]
fn start_ticks(pid: u32) -> Option<u64> {
    crate::discovery::proc::start_id(pid)
}

impl Discovery for LsofDiscovery {
    fn scan(&self, port: u16, proto: Protocol, scope: Scope) -> Result<PortState, DiscoveryError> {
        let processes = self.list(port, proto)?;
        let (mut sockets, mut others): (Vec<SocketEntry>, Vec<SocketEntry>) =
            sockets_on_port(&processes, port, proto)
                .into_iter()
                .partition(|s| s.holds(proto));
        if scope == Scope::Blocking {
            // lsof lists only sockets with an owner: each of them blocks.
            sockets.append(&mut others);
            if sockets.is_empty() {
                // Nothing lsof may see, yet the port cannot be bound.
                let (socket, holder) = self.invisible_holder(port, proto);
                return Ok(PortState::new(
                    port,
                    proto,
                    vec![socket],
                    Vec::new(),
                    vec![holder],
                ));
            }
        }
        if sockets.is_empty() {
            return Ok(PortState::new(port, proto, sockets, others, Vec::new()));
        }
        let mut holders = Vec::new();
        let state_sockets = sockets.clone();

        let mut holding: Vec<(&LsofProcess, Vec<&SocketEntry>)> = processes
            .iter()
            .filter_map(|process| {
                let held: Vec<&SocketEntry> = state_sockets
                    .iter()
                    .filter(|s| {
                        process.files.iter().any(|f| {
                            socket_entry(process, f, port, proto)
                                .is_some_and(|e| e.inode == s.inode && e.local == s.local)
                        })
                    })
                    .collect();
                (!held.is_empty()).then_some((process, held))
            })
            .collect();
        holding.sort_by_key(|(process, _)| process.pid);
        holding.dedup_by_key(|(process, _)| process.pid);

        let mut wanted: Vec<u32> = holding.iter().map(|(p, _)| p.pid).collect();
        wanted.extend(
            holding
                .iter()
                .filter_map(|(p, _)| p.ppid)
                .filter(|&pp| pp > 1),
        );
        wanted.sort_unstable();
        wanted.dedup();
        let ps = self.ps(&wanted);
        let exes = self.executables(&holding.iter().map(|(p, _)| p.pid).collect::<Vec<_>>());

        for (process, held) in holding {
            let uid = process.uid.unwrap_or(UNKNOWN_UID);
            let row = ps.get(&process.pid);
            let orphan = match process.ppid {
                Some(ppid) if ppid <= 1 => Some(true),
                // A user manager (`systemd --user`) is a subreaper, as in procfs.
                Some(ppid) => ps.get(&ppid).map(|parent| {
                    let argv0 = parent.args.split(' ').next().unwrap_or_default();
                    argv0.rsplit('/').next() == Some("systemd")
                }),
                None => None,
            };
            let (addrs, inodes) = addrs_and_inodes(held);
            holders.push(Holder {
                pid: Some(process.pid),
                ppid: process.ppid,
                uid,
                user: process
                    .login
                    .clone()
                    .or_else(|| crate::discovery::users::name_of(uid)),
                exe: exes.get(&process.pid).cloned(),
                cmdline: row
                    .filter(|r| !r.args.is_empty())
                    .map(|r| r.args.split(' ').map(str::to_owned).collect()),
                comm: process.command.clone(),
                start_ticks: start_ticks(process.pid),
                age_ms: row.and_then(|r| r.age_ms),
                orphan,
                stopped: None,
                unit: None,
                container: None,
                container_error: None,
                addrs,
                inodes,
                unknown: None,
            });
        }
        Ok(PortState::new(port, proto, sockets, others, holders))
    }

    fn holding_sockets(
        &self,
        port: u16,
        proto: Protocol,
    ) -> Result<Vec<SocketEntry>, DiscoveryError> {
        let processes = self.list(port, proto)?;
        Ok(sockets_on_port(&processes, port, proto)
            .into_iter()
            .filter(|s| s.holds(proto))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// `lsof -nP -w +c 0 -iTCP:50421 -F pcRuLfdtPnT` recorded on Linux
    /// (lsof 4.95, as root): a dual-stack `[::]` listener shared by a master
    /// and its forked worker; the master also holds both ends of a
    /// connection from 127.0.0.1 that it accepted.
    const DUAL_STACK: &str = "p31910\nR31908\ncpython3\nu0\nLroot\n\
        f3\ntIPv6\nd404405\nPTCP\nn*:50421\nTST=LISTEN\nTQR=0\nTQS=0\n\
        f4\ntIPv4\nd404406\nPTCP\nn127.0.0.1:41930->127.0.0.1:50421\nTST=ESTABLISHED\nTQR=0\nTQS=0\n\
        f5\ntIPv6\nd404407\nPTCP\nn127.0.0.1:50421->127.0.0.1:41930\nTST=ESTABLISHED\nTQR=0\nTQS=0\n\
        p31955\nR31910\ncpython3\nu0\nLroot\n\
        f3\ntIPv6\nd404405\nPTCP\nn*:50421\nTST=LISTEN\nTQR=0\nTQS=0\n";

    /// `lsof -nP -w +c 0 -iUDP:57572 -F pcRuLfdtPnT` recorded the same way:
    /// IPv4 on loopback and an IPv6-only wildcard in one process.
    const UDP: &str = "p31967\nR31906\ncpython3\nu0\nLroot\n\
        f3\ntIPv4\nd405543\nPUDP\nn127.0.0.1:57572\nTQR=0\nTQS=0\n\
        f4\ntIPv6\nd405544\nPUDP\nn*:57572\nTQR=0\nTQS=0\n";

    #[test]
    fn fields_group_into_processes_and_files() {
        let processes = parse_fields(DUAL_STACK).unwrap();
        assert_eq!(processes.len(), 2);
        let master = &processes[0];
        assert_eq!(
            (master.pid, master.ppid, master.uid),
            (31910, Some(31908), Some(0))
        );
        assert_eq!(master.login.as_deref(), Some("root"));
        assert_eq!(master.command.as_deref(), Some("python3"));
        assert_eq!(master.files.len(), 3);
        assert_eq!(
            master.files[0],
            LsofFile {
                fd: "3".into(),
                family: "IPv6".into(),
                protocol: "TCP".into(),
                name: "*:50421".into(),
                device: Some("404405".into()),
                tcp_state: Some("LISTEN".into()),
            }
        );
        assert_eq!(processes[1].ppid, Some(31910));
        assert_eq!(parse_fields("").unwrap(), vec![]);
    }

    #[test]
    fn malformed_field_output_is_an_error() {
        assert!(parse_fields("f3\ntIPv4\n").is_err());
        assert!(parse_fields("pabc\n").is_err());
        // Unknown fields (newer lsof) are ignored.
        assert_eq!(parse_fields("p1\ng7\nf3\nZx\n").unwrap()[0].files.len(), 1);
    }

    #[test]
    fn names_become_addresses_like_the_kernel_tables() {
        let v4 = |s: &str| parse_name(s, false).unwrap();
        let v6 = |s: &str| parse_name(s, true).unwrap();
        assert_eq!(v4("*:80"), (addr("0.0.0.0:80"), addr("0.0.0.0:0")));
        assert_eq!(v6("*:80"), (addr("[::]:80"), addr("[::]:0")));
        assert_eq!(v6("[::1]:8787"), (addr("[::1]:8787"), addr("[::]:0")));
        assert_eq!(
            v4("10.0.0.1:5->10.0.0.2:80"),
            (addr("10.0.0.1:5"), addr("10.0.0.2:80"))
        );
        // An IPv4 peer of a dual-stack socket, as /proc/net/tcp6 shows it.
        assert_eq!(
            v6("127.0.0.1:49535->127.0.0.1:35716"),
            (
                addr("[::ffff:127.0.0.1]:49535"),
                addr("[::ffff:127.0.0.1]:35716")
            )
        );
        assert_eq!(
            v6("[fe80::1%lo0]:22"),
            (addr("[fe80::1]:22"), addr("[::]:0"))
        );
        assert_eq!(parse_name("localhost:http", false), None);
        assert_eq!(parse_name("", false), None);
    }

    #[test]
    fn sockets_are_listed_once_and_by_local_port() {
        let processes = parse_fields(DUAL_STACK).unwrap();
        let sockets = sockets_on_port(&processes, 50421, Protocol::Tcp);
        assert_eq!(
            sockets,
            vec![
                SocketEntry {
                    local: addr("[::]:50421"),
                    remote: addr("[::]:0"),
                    state: 0x0A,
                    uid: 0,
                    inode: 404405
                },
                // Not the client end (fd 4): its local port is 41930.
                SocketEntry {
                    local: addr("[::ffff:127.0.0.1]:50421"),
                    remote: addr("[::ffff:127.0.0.1]:41930"),
                    state: 0x01,
                    uid: 0,
                    inode: 404407
                },
            ]
        );
        let client = sockets_on_port(&processes, 41930, Protocol::Tcp);
        assert_eq!(client.len(), 1);
        assert_eq!(client[0].remote, addr("127.0.0.1:50421"));
        assert!(sockets_on_port(&processes, 50421, Protocol::Udp).is_empty());
    }

    #[test]
    fn udp_sockets_hold_whatever_their_state() {
        let processes = parse_fields(UDP).unwrap();
        let sockets = sockets_on_port(&processes, 57572, Protocol::Udp);
        assert_eq!(sockets.len(), 2);
        assert!(sockets
            .iter()
            .all(|s| s.holds(Protocol::Udp) && s.state == 7));
        assert_eq!(sockets[0].uid, 0);
        assert_eq!(sockets[0].inode, 405543);
        assert_eq!(sockets[1].local, addr("[::]:57572"));
    }

    #[test]
    fn tcp_state_names() {
        assert_eq!(tcp_state_number("LISTEN"), Some(0x0A));
        assert_eq!(tcp_state_number("FIN_WAIT_1"), Some(0x04));
        assert_eq!(tcp_state_number("FIN_WAIT1"), Some(0x04));
        assert_eq!(tcp_state_number("SYN_RCVD"), Some(0x03));
        assert_eq!(tcp_state_number("BOUND"), None);
        assert_eq!(
            parse_device("0xfffff80012345678"),
            Some(0xffff_f800_1234_5678)
        );
        assert_eq!(parse_device("389439"), Some(389_439));
        assert_eq!(parse_device("x"), None);
    }

    #[test]
    fn ps_rows_and_elapsed_times() {
        let text = "  4242       05:07 /usr/bin/python3 -m headroom.cli proxy --port 8787\n\
                    4243  1-02:03:04 python3  two  spaces\n\
                      77       00:01 \n";
        assert_eq!(
            parse_ps(text),
            vec![
                PsRow {
                    pid: 4242,
                    age_ms: Some(307_000),
                    args: "/usr/bin/python3 -m headroom.cli proxy --port 8787".into()
                },
                PsRow {
                    pid: 4243,
                    age_ms: Some(93_784_000),
                    args: "python3  two  spaces".into()
                },
                PsRow {
                    pid: 77,
                    age_ms: Some(1_000),
                    args: String::new()
                },
            ]
        );
        assert_eq!(parse_etime("59"), None);
        assert_eq!(parse_etime("1:2:3:4"), None);
        assert_eq!(parse_etime("x-01:00"), None);
        assert_eq!(parse_etime("10:00:00"), Some(36_000));
    }
}
