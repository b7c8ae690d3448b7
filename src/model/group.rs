//! Grouping holders into process trees (docs/safety.md, "What held and free mean"), used only
//! by [`PortState`](super::PortState)'s constructor so the groups always
//! follow from the holders.

use super::{Group, Holder};

/// Group holders into process trees (docs/safety.md, "What held and free mean").
///
/// A holder whose parent is also a holder sharing at least one socket inode
/// belongs to its parent's group, transitively, so forked workers of a
/// master (and their own children) are judged by the master. A child that
/// holds a *different* socket than its parent is its own group: it was not
/// handed the socket, so the parent's rule says nothing about it. Pid-less
/// holders are each their own group.
///
/// This works on plain [`Holder`] data, so every backend (and the policy test
/// runner's hand-written owners) groups the same way. Groups come out in
/// order of their root's index; members are the root first, then ascending
/// pid.
pub(crate) fn group_holders(holders: &[Holder]) -> Vec<Group> {
    let index_of_pid: std::collections::HashMap<u32, usize> = holders
        .iter()
        .enumerate()
        .filter_map(|(i, h)| Some((h.pid?, i)))
        .collect();
    let parent_of: Vec<Option<usize>> = holders
        .iter()
        .enumerate()
        .map(|(i, child)| {
            let ppid = child.ppid?;
            child.pid?;
            let j = *index_of_pid.get(&ppid)?;
            let shares = holders[j]
                .inodes
                .iter()
                .any(|inode| child.inodes.contains(inode));
            (j != i && shares).then_some(j)
        })
        .collect();

    // Each holder's root, found once: a walk stops at the first holder whose
    // root is already known, so a deep tree costs linear time, not cubic.
    let mut root_of: Vec<Option<usize>> = vec![None; holders.len()];
    for start in 0..holders.len() {
        let mut path: Vec<usize> = Vec::new();
        let mut on_path: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
        let mut at = start;
        let root = loop {
            if let Some(known) = root_of[at] {
                break known;
            }
            if let Some(&pos) = on_path.get(&at) {
                // A cycle cannot come from a real process table (pids are
                // unique and a parent is older than its child), but data can
                // be hand-written: break it at its smallest index so every
                // member agrees on the root.
                break path[pos..].iter().copied().min().unwrap_or(at);
            }
            on_path.insert(at, path.len());
            path.push(at);
            match parent_of[at] {
                Some(parent) => at = parent,
                None => break at,
            }
        };
        for p in path {
            root_of[p] = Some(root);
        }
    }

    let mut by_root: std::collections::BTreeMap<usize, Vec<usize>> =
        std::collections::BTreeMap::new();
    for (i, root) in root_of.iter().enumerate() {
        by_root.entry(root.unwrap_or(i)).or_default().push(i);
    }
    by_root
        .into_iter()
        .map(|(root, mut members)| {
            members.sort_by_key(|&m| (m != root, holders.get(m).and_then(|h| h.pid), m));
            Group { root, members }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::group_holders;
    use crate::model::{Group, Holder, Unknown};

    fn holder(pid: Option<u32>, ppid: Option<u32>, inodes: &[u64]) -> Holder {
        let mut h = Holder::unseen(1000, Vec::new(), inodes.to_vec(), Unknown::NotVisible);
        h.pid = pid;
        h.ppid = ppid;
        h
    }

    fn group(root: usize, members: &[usize]) -> Group {
        Group {
            root,
            members: members.to_vec(),
        }
    }

    #[test]
    fn workers_join_their_master() {
        // Sorted by pid, as discovery produces them.
        let holders = [
            holder(Some(100), Some(1), &[7]),
            holder(Some(101), Some(100), &[7]),
            holder(Some(102), Some(100), &[7]),
        ];
        assert_eq!(group_holders(&holders), vec![group(0, &[0, 1, 2])]);
    }

    #[test]
    fn child_with_a_different_socket_is_its_own_group() {
        let holders = [
            holder(Some(100), Some(1), &[7]),
            holder(Some(101), Some(100), &[8]),
        ];
        assert_eq!(
            group_holders(&holders),
            vec![group(0, &[0]), group(1, &[1])]
        );
    }

    #[test]
    fn sharing_one_of_several_sockets_is_enough() {
        let holders = [
            holder(Some(100), Some(1), &[7, 9]),
            holder(Some(101), Some(100), &[9]),
        ];
        assert_eq!(group_holders(&holders), vec![group(0, &[0, 1])]);
    }

    #[test]
    fn three_levels_collapse_to_the_root() {
        // Index order differs from tree order: the grandchild has the
        // lowest index after the root, members still come out by pid.
        let holders = [
            holder(Some(50), Some(1), &[7]),
            holder(Some(60), Some(70), &[7]),
            holder(Some(70), Some(50), &[7]),
            holder(Some(80), Some(1), &[7]),
        ];
        assert_eq!(
            group_holders(&holders),
            vec![group(0, &[0, 1, 2]), group(3, &[3])]
        );
    }

    #[test]
    fn root_comes_first_even_with_a_higher_pid() {
        // pid wrap-around: the master can have a higher pid than its worker.
        let holders = [
            holder(Some(5), Some(32000), &[7]),
            holder(Some(32000), Some(1), &[7]),
        ];
        assert_eq!(group_holders(&holders), vec![group(1, &[1, 0])]);
    }

    #[test]
    fn pidless_holders_are_each_their_own_group() {
        let holders = [
            holder(Some(100), Some(1), &[7]),
            holder(None, None, &[7]),
            holder(None, None, &[8]),
        ];
        assert_eq!(
            group_holders(&holders),
            vec![group(0, &[0]), group(1, &[1]), group(2, &[2])]
        );
    }

    #[test]
    fn a_hand_written_cycle_still_yields_one_group() {
        let holders = [
            holder(Some(10), Some(11), &[7]),
            holder(Some(11), Some(10), &[7]),
        ];
        assert_eq!(group_holders(&holders), vec![group(0, &[0, 1])]);
    }

    #[test]
    fn no_holders_no_groups() {
        assert!(group_holders(&[]).is_empty());
    }
}
