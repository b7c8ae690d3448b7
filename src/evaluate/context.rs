//! Who is asking, and what must never be signalled: the evaluation's only
//! view of the machine it runs on. The resolver builds it once per run (or
//! policy tests build it from a `[[test]]` case) and passes it in as data,
//! so evaluation itself reads nothing from the system.

use serde::Serialize;
use std::collections::BTreeMap;

/// Who is asking, and what must never be signalled.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// uid running portguard (`"$self"`).
    pub self_uid: Option<u32>,
    /// User name running portguard (`"$self"` in policy tests, by name).
    pub self_name: Option<String>,
    /// Processes that are never signalled, with the reason.
    pub protected: Vec<Protected>,
    /// How user names in policies are matched. `Some`: the uid of each name
    /// the policy uses, as the system's user database gave it (`None` for a
    /// name it does not know), so a name matches by uid. `None`: names are
    /// compared with the owners' names as data (policy tests, whose owners
    /// are never looked up on the machine running them).
    pub uids: Option<BTreeMap<String, Option<u32>>>,
}

/// A process portguard must never signal (docs/safety.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Protected {
    /// Its pid.
    pub pid: u32,
    /// Why it is protected.
    pub why: ProtectedWhy,
}

/// Why a process is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProtectedWhy {
    /// pid 1 (init).
    Init,
    /// portguard itself.
    Portguard,
    /// An ancestor of portguard: the program that called the hook, its
    /// shell, the CI runner.
    Ancestor,
}

impl Context {
    /// The context of a run by user `self_uid` (named `self_name`) whose
    /// process and ancestors are `chain` (portguard first): each of them,
    /// and pid 1, is protected. `uids` maps the policy's user names to uids.
    pub fn new(
        self_uid: u32,
        self_name: Option<String>,
        chain: &[u32],
        uids: BTreeMap<String, Option<u32>>,
    ) -> Self {
        let mut protected = vec![Protected {
            pid: 1,
            why: ProtectedWhy::Init,
        }];
        for (i, &pid) in chain.iter().enumerate() {
            if pid == 1 || protected.iter().any(|p| p.pid == pid) {
                continue;
            }
            let why = if i == 0 {
                ProtectedWhy::Portguard
            } else {
                ProtectedWhy::Ancestor
            };
            protected.push(Protected { pid, why });
        }
        Context {
            self_uid: Some(self_uid),
            self_name,
            protected,
            uids: Some(uids),
        }
    }

    /// The protection of `pid`, when it is protected.
    pub fn protected(&self, pid: u32) -> Option<&Protected> {
        self.protected.iter().find(|p| p.pid == pid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portguard_its_ancestors_and_init_are_protected() {
        let ctx = Context::new(1000, Some("alice".into()), &[500, 400, 1], BTreeMap::new());
        let whys: Vec<(u32, ProtectedWhy)> = ctx.protected.iter().map(|p| (p.pid, p.why)).collect();
        assert_eq!(
            whys,
            [
                (1, ProtectedWhy::Init),
                (500, ProtectedWhy::Portguard),
                (400, ProtectedWhy::Ancestor)
            ]
        );
        assert!(ctx.protected(400).is_some() && ctx.protected(401).is_none());
    }
}
