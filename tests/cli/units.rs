//! Holders that run in systemd units, on real cgroups. systemd is not pid 1
//! on the test machines, but cgroups are real: as root, a test makes a
//! cgroup named like a unit (`system.slice/portguard-test-PID-N.service`) in
//! a mounted hierarchy, moves its holder there, and removes it afterwards.

use crate::support::*;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// A cgroup named like a systemd service; removed on drop (after its
/// processes are gone).
struct UnitCgroup {
    dir: PathBuf,
    name: String,
}

/// The mounted hierarchy systemd would use: its own v1 one (`name=systemd`)
/// where mounted, else cgroup v2.
fn hierarchy() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mount = |want: &dyn Fn(&str, &str) -> bool| {
        info.lines().find_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let point = pre.split_whitespace().nth(4)?;
            let mut post = post.split_whitespace();
            let fstype = post.next()?;
            let opts = post.nth(1)?;
            want(fstype, opts).then(|| PathBuf::from(point))
        })
    };
    mount(&|fs, opts| fs == "cgroup" && opts.split(',').any(|o| o == "name=systemd"))
        .or_else(|| mount(&|fs, _| fs == "cgroup2"))
}

impl UnitCgroup {
    fn new() -> Option<UnitCgroup> {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: needs root to make a cgroup");
            return None;
        }
        static N: AtomicU32 = AtomicU32::new(0);
        let root = hierarchy()?;
        let name = format!(
            "portguard-test-{}-{}.service",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let dir = root.join("system.slice").join(&name);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            eprintln!("skipped: cannot make the cgroup {}: {e}", dir.display());
            return None;
        }
        Some(UnitCgroup { dir, name })
    }

    fn adopt(&self, pid: u32) {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string())
            .expect("move the process into the cgroup");
    }
}

impl Drop for UnitCgroup {
    fn drop(&mut self) {
        // A cgroup can be removed once it is empty; its processes (killed by
        // their own guards) may take a moment to go.
        for _ in 0..100 {
            if std::fs::remove_dir(&self.dir).is_ok() || !Path::new(&self.dir).exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

#[test]
fn who_explain_and_match_unit_see_the_unit() {
    let Some(unit) = UnitCgroup::new() else {
        return;
    };
    let holder = Holder::tcp("127.0.0.1").spawn();
    unit.adopt(holder.pid());
    let sandbox = Sandbox::new();
    let port = holder.port().to_string();
    let who = sandbox.run(["who", &port, "--format", "json"]);
    assert_eq!(
        who.port(holder.port())["holders"][0]["unit"],
        unit.name.as_str(),
        "{}",
        who.describe()
    );
    let human = sandbox.run(["who", &port]);
    assert!(
        human.stdout.contains(&format!("unit {}", unit.name)),
        "{}",
        human.describe()
    );

    let policy = sandbox.policy(
        "[[rule]]\nname = \"by-unit\"\nmatch.unit = '^portguard-test-.*\\.service$'\naction = \"refuse\"\nmessage = \"held by {unit}\"\n",
    );
    let run = sandbox.run(["resolve", &port, "--explain", "--policy", &policy]);
    run.assert_exit(4);
    assert!(
        run.stdout.contains("by-unit (line 1): APPLIES"),
        "{}",
        run.describe()
    );
    assert!(
        run.stdout.contains(&format!("held by {}", unit.name)),
        "{}",
        run.describe()
    );

    // `mine` leaves a service's process to its service manager.
    let mine = sandbox.run(["resolve", &port, "--policy", "mine", "--format", "json"]);
    mine.assert_exit(4);
    assert_eq!(
        mine.port(holder.port())["rule"],
        "service",
        "{}",
        mine.describe()
    );
    assert!(holder.is_alive());
}

#[test]
fn check_warns_about_terminating_a_unit() {
    let sandbox = Sandbox::new();
    let policy = sandbox.policy(
        "[[rule]]\nname = \"stop-nginx\"\nmatch.unit = '^nginx\\.service$'\nmatch.user = \"$self\"\naction = \"terminate\"\n",
    );
    let run = sandbox.run(["check", &policy]);
    run.assert_exit(0);
    assert!(run.stderr.contains("Restart="), "{}", run.describe());
    sandbox
        .run(["check", "--deny-warnings", &policy])
        .assert_exit(2);
}

/// A service that keeps restarting its server: the failure names the unit
/// and the systemctl command that stops it.
#[test]
fn a_restarting_service_is_named_with_systemctl() {
    let Some(unit) = UnitCgroup::new() else {
        return;
    };
    let port = crate::safety::port_from(46000);
    let sup = crate::safety::supervisor(port);
    unit.adopt(sup.child.id());
    let run = crate::safety::resolve_respawning(port);
    run.assert_exit(5);
    let entry = run.port(port);
    assert_eq!(entry["reason"], "retaken", "{}", run.describe());
    let message = entry["message"].as_str().unwrap_or("");
    assert!(
        message.contains(&format!("systemctl stop {}", unit.name)),
        "{}",
        run.describe()
    );
    drop(sup);
}

/// `init --port` on a port a service's process holds writes a rule that
/// refuses it, naming the unit, instead of one that terminates it.
#[test]
fn init_port_refuses_a_service_holder_by_its_unit() {
    let Some(unit) = UnitCgroup::new() else {
        return;
    };
    let holder = Holder::tcp("127.0.0.1").spawn();
    unit.adopt(holder.pid());
    let sandbox = Sandbox::new();
    let port = holder.port().to_string();
    let run = sandbox.run(["init", "--port", &port]);
    run.assert_exit(0);
    assert!(
        run.stdout.contains("refuses to touch it"),
        "{}",
        run.describe()
    );
    let text = std::fs::read_to_string(sandbox.work_dir().join("portguard.toml")).unwrap();
    let unit_re = format!("match.unit = '^{}$'", unit.name.replace('.', "\\."));
    assert!(text.contains(&unit_re), "{unit_re}\n{text}");
    assert!(
        text.contains(&format!("unit = \"{}\"", unit.name)),
        "{text}"
    );
    for args in [
        vec!["check", "--deny-warnings", "portguard.toml"],
        vec!["test", "portguard.toml"],
    ] {
        let checked = sandbox.run(&args);
        checked.assert_exit(0);
    }
    let resolve = sandbox.run(["resolve", &port, "--format", "json"]);
    resolve.assert_exit(4);
    let entry = resolve.port(holder.port());
    assert!(
        entry["message"]
            .as_str()
            .is_some_and(|m| m.contains(&format!("systemctl stop {}", unit.name))),
        "{}",
        resolve.describe()
    );
    assert!(holder.is_alive());
}
