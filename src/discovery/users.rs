//! User names ↔ uids through the system's user database (NSS, so LDAP and
//! sssd users resolve like they do for `ls -l`).

/// Name of `uid`, when the user database knows it.
pub fn name_of(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
}

/// uid of user `name`, when the user database knows it.
pub fn uid_of(name: &str) -> Option<u32> {
    nix::unistd::User::from_name(name)
        .ok()
        .flatten()
        .map(|u| u.uid.as_raw())
}

#[cfg(test)]
mod tests {
    #[test]
    fn root_resolves_both_ways() {
        assert_eq!(super::name_of(0).as_deref(), Some("root"));
        assert_eq!(super::uid_of("root"), Some(0));
        assert_eq!(super::uid_of("no-such-user-portguard"), None);
    }
}
