//! The systemd unit a process runs in, from its cgroup path.
//!
//! systemd puts every unit in a cgroup named after it:
//! `/system.slice/nginx.service`, a user's units under
//! `/user.slice/user-1000.slice/user@1000.service/app.slice/vite.service`,
//! login sessions in `session-3.scope`. The cgroup v2 line (`0::PATH`) is
//! used where there is one, else the v1 `name=systemd` hierarchy. This needs
//! no systemd running: it reads only the path, which is what makes it
//! testable on real cgroups without a service manager.

use crate::model::Unit;

/// The unit of a process from its `/proc/PID/cgroup` text, when the
/// process is in one.
pub fn unit_of(cgroup: &str) -> Option<Unit> {
    let v1 = cgroup.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        (controllers == "name=systemd").then_some(path)
    });
    let v2 = cgroup.lines().find_map(|l| l.strip_prefix("0::"));
    [v1, v2]
        .into_iter()
        .flatten()
        .find_map(|path| unit_of_path(path.trim_end()))
}

/// The innermost unit on a cgroup path.
pub fn unit_of_path(path: &str) -> Option<Unit> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let (at, name) = parts.iter().enumerate().rev().find(|(_, p)| is_unit(p))?;
    let user = parts[..at].iter().rev().find_map(|p| {
        p.strip_prefix("user@")?
            .strip_suffix(".service")?
            .parse::<u32>()
            .ok()
    });
    Some(Unit {
        name: (*name).to_string(),
        user,
    })
}

/// Whether a cgroup path component names a unit that holds processes.
fn is_unit(component: &str) -> bool {
    [".service", ".scope"]
        .iter()
        .any(|suffix| component.len() > suffix.len() && component.ends_with(suffix))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(name: &str, user: Option<u32>) -> Option<Unit> {
        Some(Unit {
            name: name.into(),
            user,
        })
    }

    #[test]
    fn system_user_and_session_units() {
        assert_eq!(
            unit_of("0::/system.slice/nginx.service\n"),
            unit("nginx.service", None)
        );
        assert_eq!(
            unit_of("0::/user.slice/user-1000.slice/user@1000.service/app.slice/vite.service\n"),
            unit("vite.service", Some(1000))
        );
        assert_eq!(
            unit_of("0::/user.slice/user-1000.slice/session-3.scope\n"),
            unit("session-3.scope", None)
        );
        assert_eq!(
            unit_of("0::/user.slice/user-1000.slice/user@1000.service/init.scope\n"),
            unit("init.scope", Some(1000))
        );
        assert!(unit("nginx.service", None).unwrap().is_service());
        assert!(!unit("session-3.scope", None).unwrap().is_service());
    }

    #[test]
    fn outside_any_unit() {
        assert_eq!(unit_of("0::/\n"), None);
        assert_eq!(unit_of("0::/user.slice\n"), None);
        assert_eq!(unit_of(""), None);
        assert_eq!(unit_of("garbage"), None);
        assert_eq!(unit_of("0::/.service\n"), None);
    }

    #[test]
    fn cgroup_v1_name_systemd() {
        let text = "12:cpuset:/\n11:memory:/system.slice/sshd.service\n\
                    1:name=systemd:/system.slice/sshd.service\n";
        assert_eq!(unit_of(text), unit("sshd.service", None));
        // v1 without the systemd hierarchy says nothing.
        assert_eq!(unit_of("11:memory:/system.slice/sshd.service\n"), None);
        // Hybrid: the v2 line at the root, systemd's v1 hierarchy set.
        assert_eq!(
            unit_of("9:name=systemd:/system.slice/sshd.service\n0::/\n"),
            unit("sshd.service", None)
        );
    }

    #[test]
    fn docker_and_nested_cgroups() {
        assert_eq!(
            unit_of("0::/system.slice/docker-3f2a.scope\n"),
            unit("docker-3f2a.scope", None)
        );
        // A cgroup a service made below itself still belongs to the service.
        assert_eq!(
            unit_of("0::/system.slice/app.service/workers\n"),
            unit("app.service", None)
        );
    }
}
