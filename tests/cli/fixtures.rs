//! The fixture layer proves itself before any scenario relies on it: a holder
//! really listens where it says, looks exactly like the program it imitates,
//! and is gone after drop.

use crate::support::{proc_cmdline, proc_start, python, reserved_free_port, Holder, Proto};
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

fn assert_gone_after_drop(pids: Vec<u32>) {
    for pid in pids {
        assert_eq!(
            proc_start(pid),
            None,
            "pid {pid} survived the fixture's drop"
        );
    }
}

#[test]
fn tcp_holder_listens_on_the_reported_port_and_answers() {
    let holder = Holder::tcp("127.0.0.1").spawn();
    assert!(
        !holder.port_is_bindable(),
        "port {} should be held",
        holder.port()
    );

    let mut conn = TcpStream::connect(("127.0.0.1", holder.port())).expect("connect to holder");
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    conn.write_all(b"GET /livez HTTP/1.0\r\n\r\n").unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).unwrap();
    assert!(
        reply.contains("\"service\":\"headroom-proxy\""),
        "reply: {reply}"
    );

    let pid = holder.pid();
    drop(holder);
    assert_gone_after_drop(vec![pid]);
}

#[test]
fn holder_has_exactly_the_requested_argv() {
    let proxy = Holder::headroom_console_script().spawn();
    let dir = proxy.dir().to_str().unwrap().to_owned();
    assert_eq!(
        proc_cmdline(proxy.pid()),
        [
            format!("{dir}/venv/bin/python3"),
            format!("{dir}/venv/bin/headroom"),
            "proxy".into(),
            "--port".into(),
            proxy.port().to_string(),
        ]
    );
    // The executable is the base interpreter, never a path with "headroom".
    let exe = std::fs::read_link(format!("/proc/{}/exe", proxy.pid())).unwrap();
    let real = std::fs::canonicalize(&python().exe).unwrap();
    assert_eq!(exe, real);

    let module = Holder::headroom_module().spawn();
    assert_eq!(
        proc_cmdline(module.pid()),
        [
            python().exe.clone(),
            "-m".into(),
            "headroom.cli".into(),
            "proxy".into(),
            "--port".into(),
            module.port().to_string(),
            "--workers".into(),
            "1".into(),
        ]
    );
    assert!(!module.port_is_bindable());

    let grep = Holder::lookalike(&["grep", "headroom", "proxy"], "headroom").spawn();
    assert_eq!(proc_cmdline(grep.pid()), ["grep", "headroom", "proxy"]);
    assert!(!grep.port_is_bindable());
}

#[test]
fn workers_share_the_socket_and_all_die_on_drop() {
    let holder = Holder::tcp("127.0.0.1").workers(2).spawn();
    let pids = holder.all_pids();
    assert_eq!(pids.len(), 3);
    assert!(holder.all_alive());
    for worker in holder.worker_pids() {
        let stat = std::fs::read_to_string(format!("/proc/{worker}/stat")).unwrap();
        let ppid: u32 = stat[stat.rfind(')').unwrap() + 2..]
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            ppid,
            holder.pid(),
            "worker {worker} is forked by the holder"
        );
    }
    drop(holder);
    assert_gone_after_drop(pids);
}

#[test]
fn sigterm_behaviour_is_as_requested() {
    let plain = Holder::tcp("127.0.0.1").spawn();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(plain.pid() as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let status = plain
        .wait_exit(Duration::from_secs(3))
        .expect("exits on SIGTERM");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(15));
    assert!(plain.port_is_bindable());

    let stubborn = Holder::tcp("127.0.0.1").ignore_sigterm().spawn();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(stubborn.pid() as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    assert_eq!(stubborn.wait_exit(Duration::from_millis(300)), None);
    assert!(stubborn.is_alive());

    let brief = Holder::tcp("127.0.0.1")
        .exit_after(Duration::from_millis(200))
        .spawn();
    let status = brief
        .wait_exit(Duration::from_secs(3))
        .expect("exits by itself");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn ipv6_udp_and_bound_only_holders() {
    let v6 = Holder::tcp("::1").spawn();
    assert_eq!(v6.addr(), format!("[::1]:{}", v6.port()));
    assert!(TcpStream::connect(("::1", v6.port())).is_ok());
    // IPv6-only: the same port number is still free on IPv4.
    assert!(crate::support::port_is_bindable(
        "127.0.0.1",
        v6.port(),
        Proto::Tcp
    ));

    let udp = Holder::udp("127.0.0.1").spawn();
    assert!(!udp.port_is_bindable());
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    sock.send_to(b"ping", ("127.0.0.1", udp.port())).unwrap();
    let mut buf = [0u8; 16];
    let (n, _) = sock.recv_from(&mut buf).expect("udp echo");
    assert_eq!(&buf[..n], b"ping");

    let reserved = reserved_free_port();
    assert!(
        TcpStream::connect(("127.0.0.1", reserved.port())).is_err(),
        "a bound-only socket must not accept connections"
    );
}

#[test]
fn http_server_runs_on_a_suite_owned_port() {
    let server = Holder::http_server();
    assert!((47000..48000).contains(&server.port()));
    let argv = proc_cmdline(server.pid());
    assert_eq!(&argv[1..4], ["-m", "http.server", "--bind"]);
    assert!(TcpStream::connect(("127.0.0.1", server.port())).is_ok());
    let pid = server.pid();
    drop(server);
    assert_gone_after_drop(vec![pid]);
}
