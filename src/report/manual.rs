//! The words of the man pages that do not come from the command-line
//! definition: the main page's description, where policies are found, the
//! environment portguard reads. `cli::man` lays them out in roff.

/// The main page's DESCRIPTION, one paragraph per entry.
pub const DESCRIPTION: [&str; 3] = [
    "Before a server starts, portguard answers two questions: who holds the port it \
     needs, and what should happen to them? It finds every process that holds \
     the port (TCP by default, UDP with --udp), judges them by a TOML policy, and \
     terminates, waits for, refuses or reuses them. A port counts as free only when a \
     server can bind it.",
    "Every decision can be shown without acting: resolve --explain prints the whole \
     decision trace and touches nothing, so the same policy runs as a pre-start hook and \
     as a dry run in CI. who only reports. check validates policy files and test runs \
     their [[test]] cases; init writes a starter policy.",
    "portguard never signals a process that no rule matched, pid 1, itself or its \
     ancestors, and confirms each process is still the one it judged before signalling \
     it.",
];

/// FILES: where a policy is looked for when --policy is not given, in order.
pub const FILES: [(&str, &str); 3] = [
    (
        "./portguard.toml",
        "the policy of the current directory (portguard init writes one), used when \
         --policy and $PORTGUARD_POLICY are not given",
    ),
    (
        "$XDG_CONFIG_HOME/portguard/policy.toml",
        "the user's policy (~/.config/portguard/policy.toml when $XDG_CONFIG_HOME is \
         unset), used when there is no ./portguard.toml; without it, the built-in \
         headroom policy decides",
    ),
    (
        "./policy.schema.json",
        "the JSON Schema of the policy format (portguard schema) that portguard init writes \
         next to portguard.toml, for editors",
    ),
];

/// ENVIRONMENT: the variables portguard reads.
pub const ENVIRONMENT: [(&str, &str); 4] = [
    (
        "PORTGUARD_POLICY",
        "a policy file or built-in name, used when --policy is not given",
    ),
    (
        "XDG_CONFIG_HOME, HOME",
        "where the user's policy is looked for",
    ),
    (
        "DOCKER_HOST",
        "the Docker Engine API (a unix:// socket; default /var/run/docker.sock), asked \
         which container a docker-proxy holder publishes",
    ),
    (
        "HEADROOM_WORKSPACE_DIR",
        "where the built-in headroom policies look for the proxy's client records \
         (~/.headroom when unset); any variable a policy's match.clients directory names \
         is read the same way",
    ),
];

/// The sentence after the exit codes.
pub const WORST_CODE: &str =
    "With several ports, the worst code wins, in the order 70, 2, 5, 4, 3, 0.";

/// A command's own EXIT STATUS; `None`: the full table of the main page
/// (resolve, and run with its own 126/127).
pub fn exit_codes(command: &str) -> Option<Vec<(&'static str, &'static str)>> {
    const USAGE: (&str, &str) = ("2", "usage error; nothing was touched");
    Some(match command {
        "resolve" | "run" => return None,
        "who" => vec![
            ("0", "the ports were reported, held or free"),
            USAGE,
            ("70", "the socket table could not be read"),
        ],
        "check" => vec![
            ("0", "every file is a valid policy"),
            (
                "2",
                "a file is not a valid policy (or, with --deny-warnings, has a warning)",
            ),
        ],
        "test" => vec![
            ("0", "every test case passed"),
            ("1", "a test case failed"),
            ("2", "a file is not a valid policy"),
        ],
        "init" => vec![
            ("0", "both files were written"),
            (
                "2",
                "a file is in the way, the directory cannot be written, or --port is not one port; nothing was written",
            ),
            (
                "70",
                "the holders of --port could not be discovered, or the policy init made does not pass its own checks (a bug); nothing was written",
            ),
        ],
        _ => vec![
            ("0", "done"),
            USAGE,
            ("70", "the output could not be written"),
        ],
    })
}
