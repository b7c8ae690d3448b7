//! `portguard init`: the starter policy and its schema, the rule for a
//! port's real holder, and never overwriting a file. Whatever init writes
//! must pass `check --deny-warnings` and `test` as written, and (with
//! `--port`) decide about the real holder the way its test case says.

use crate::support::*;
use std::fs;
use std::path::Path;

/// `check --deny-warnings` and `test` both pass on `file` (run in `sandbox`).
#[track_caller]
fn assert_passes_its_checks(sandbox: &Sandbox, file: &Path) {
    let file = file.to_str().unwrap();
    let check = sandbox.run(["check", "--deny-warnings", file]);
    check.assert_exit(0);
    assert!(check.stdout.contains("0 warnings"), "{}", check.describe());
    let test = sandbox.run(["test", file]);
    test.assert_exit(0);
    assert!(
        test.stdout.contains(" passed, 0 failed") && !test.stdout.contains("\n0 passed"),
        "{}",
        test.describe()
    );
}

/// The generated policy, parsed.
fn parsed(path: &Path) -> toml::Table {
    let text = fs::read_to_string(path).unwrap();
    toml::from_str(&text).unwrap_or_else(|e| panic!("not TOML: {e}\n{text}"))
}

/// The rule named `name` of a parsed policy.
fn rule<'a>(policy: &'a toml::Table, name: &str) -> &'a toml::Table {
    policy["rule"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r.as_table())
        .find(|r| r["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no rule {name}: {policy:#?}"))
}

/// The name of the rule init wrote for the holder: the one its first test
/// case expects.
fn holder_rule_name(policy: &toml::Table) -> String {
    policy["test"][0]["expect"]["rule"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn init_writes_a_starter_policy_and_its_schema_that_pass_check_and_test() {
    let sandbox = Sandbox::new();
    let run = sandbox.run(["init"]);
    run.assert_exit(0);
    let policy = sandbox.work_dir().join("portguard.toml");
    let schema = sandbox.work_dir().join("policy.schema.json");
    let text = fs::read_to_string(&policy).unwrap();
    assert_eq!(
        text.lines().next(),
        Some("#:schema ./policy.schema.json"),
        "{text}"
    );
    let printed = sandbox.run(["schema"]);
    assert_eq!(fs::read_to_string(&schema).unwrap(), printed.stdout);
    assert!(
        run.stdout
            .contains("wrote portguard.toml and policy.schema.json"),
        "{}",
        run.describe()
    );
    assert_passes_its_checks(&sandbox, &policy);

    // The placeholder rule and its example cases; nothing else is written.
    let parsed = parsed(&policy);
    assert_eq!(
        rule(&parsed, "dev-server")["action"].as_str(),
        Some("terminate")
    );
    assert!(parsed["test"].as_array().unwrap().len() >= 3);
    let mut names: Vec<String> = fs::read_dir(sandbox.work_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["policy.schema.json", "portguard.toml"]);

    // Found by itself from its directory: the default policy is this one.
    let holder = Holder::tcp("127.0.0.1").spawn();
    let explain = sandbox.run([
        "resolve",
        &holder.port().to_string(),
        "--explain",
        "--format",
        "json",
    ]);
    explain.assert_exit(4);
    assert_eq!(
        explain.port(holder.port())["rule"],
        "others",
        "{}",
        explain.describe()
    );
}

#[test]
fn init_never_overwrites_and_writes_nothing_when_either_file_exists() {
    for existing in ["portguard.toml", "policy.schema.json"] {
        let sandbox = Sandbox::new();
        let path = sandbox.work_dir().join(existing);
        fs::write(&path, "mine\n").unwrap();
        let run = sandbox.run(["init"]);
        run.assert_exit(2);
        assert!(
            run.stderr.contains(existing) && run.stderr.contains("already exists"),
            "{}",
            run.describe()
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), "mine\n");
        let entries: Vec<_> = fs::read_dir(sandbox.work_dir()).unwrap().collect();
        assert_eq!(entries.len(), 1, "init wrote something: {entries:?}");
    }

    // A dangling symlink is a file in the way too: nothing is created
    // through it.
    let sandbox = Sandbox::new();
    let target = sandbox.work_dir().join("elsewhere.toml");
    std::os::unix::fs::symlink(&target, sandbox.work_dir().join("portguard.toml")).unwrap();
    sandbox.run(["init"]).assert_exit(2);
    assert!(!target.exists());
    assert!(!sandbox.work_dir().join("policy.schema.json").exists());
}

#[test]
fn init_dir_makes_the_directory_and_says_how_to_use_the_policy_from_elsewhere() {
    let sandbox = Sandbox::new();
    let dir = sandbox.work_dir().join("a/b");
    let run = sandbox.run(["init", "--dir", dir.to_str().unwrap()]);
    run.assert_exit(0);
    let policy = dir.join("portguard.toml");
    assert!(dir.join("policy.schema.json").is_file());
    assert!(run.stdout.contains("--policy "), "{}", run.describe());
    assert_passes_its_checks(&sandbox, &policy);
    // The second time, nothing is written.
    sandbox
        .run(["init", "--dir", dir.to_str().unwrap()])
        .assert_exit(2);
}

#[test]
fn init_port_writes_a_rule_for_your_own_holder_that_terminates_it() {
    let holder = Holder::tcp("127.0.0.1").workers(2).spawn();
    let port = holder.port().to_string();
    let sandbox = Sandbox::new();
    let run = sandbox.run(["init", "--port", &port]);
    run.assert_exit(0);
    assert!(
        run.stdout.contains(&format!("pid {}", holder.pid()))
            && run.stdout.contains("terminates it"),
        "{}",
        run.describe()
    );
    let path = sandbox.work_dir().join("portguard.toml");
    assert_passes_its_checks(&sandbox, &path);

    let policy = parsed(&path);
    let name = holder_rule_name(&policy);
    let r = rule(&policy, &name);
    assert_eq!(r["action"].as_str(), Some("terminate"));
    assert!(r["grace"].as_str().is_some());
    let matcher = r["match"].as_table().unwrap();
    assert_eq!(matcher["user"].as_str(), Some("$self"));
    // argv[0] by base name under any path, then the script, anchored.
    let cmdline = matcher["cmdline"].as_str().unwrap();
    let script = format!("{}/{HOLDER_MARK}.py", holder.dir().display());
    assert!(cmdline.starts_with(r"^\S*python"), "{cmdline}");
    assert!(
        cmdline.ends_with(&format!(r"\s+{}(\s|$)", script.replace('.', r"\."))),
        "{cmdline}"
    );
    let exe = fs::read_link(format!("/proc/{}/exe", holder.pid())).unwrap();
    let exe_re = matcher["exe"].as_str().unwrap();
    assert_eq!(
        exe_re,
        format!("^{}$", exe.display().to_string().replace('.', r"\."))
    );

    // The case is the holder as discovery saw it: pid, parent, argv.
    let case = &policy["test"][0];
    assert_eq!(case["expect"]["action"].as_str(), Some("terminate"));
    let owners = case["owners"].as_array().unwrap();
    assert_eq!(owners.len(), 3, "the holder and its two workers");
    let root = owners
        .iter()
        .find(|o| o["pid"].as_integer() == Some(i64::from(holder.pid())))
        .unwrap();
    assert_eq!(root["ppid"].as_integer(), holder.parent().map(i64::from));
    let argv: Vec<String> = root["cmdline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(argv, proc_cmdline(holder.pid()));
    assert_eq!(root["exe"].as_str(), exe.to_str());

    // The real decision is the one the case expects, and it frees the port.
    let explain = sandbox.run(["resolve", &port, "--explain", "--format", "json"]);
    explain.assert_exit(0);
    assert_eq!(
        explain.port(holder.port())["rule"].as_str(),
        Some(name.as_str())
    );
    assert!(holder.all_alive(), "--explain acts on nothing");
    let real = sandbox.run(["resolve", &port, "--format", "json"]);
    real.assert_exit(0);
    assert_eq!(
        real.port(holder.port())["rule"].as_str(),
        Some(name.as_str())
    );
    assert!(
        holder.wait_all_gone(EXIT_TIMEOUT).is_empty(),
        "{}",
        real.describe()
    );
    assert!(holder.port_is_bindable());
}

#[test]
fn init_port_rule_matches_only_the_script_it_saw() {
    // The same interpreter running another script is not what init saw:
    // the rule is anchored to the program and its script.
    let seen = Holder::tcp("127.0.0.1").spawn();
    let sandbox = Sandbox::new();
    sandbox
        .run(["init", "--port", &seen.port().to_string()])
        .assert_exit(0);
    let other = Holder::tcp("127.0.0.1")
        .script("other-server.py")
        .argv(["{python}", "{dir}/other-server.py", "--port", "{port}"])
        .spawn();
    let policy = sandbox.work_dir().join("portguard.toml");
    let text = fs::read_to_string(&policy).unwrap();
    // Only the port differs: give the rule the other holder's port.
    let widened = text.replace(
        &format!("ports = [{}]", seen.port()),
        &format!("ports = [{}, {}]", seen.port(), other.port()),
    );
    fs::write(&policy, widened).unwrap();
    let run = sandbox.run(["resolve", &other.port().to_string(), "--format", "json"]);
    run.assert_exit(4);
    assert_eq!(
        run.port(other.port())["rule"],
        "others",
        "{}",
        run.describe()
    );
    assert!(other.is_alive() && seen.is_alive());
}

#[test]
fn init_port_on_a_free_port_says_so_and_writes_the_starter() {
    let free = reserved_free_port();
    let sandbox = Sandbox::new();
    let run = sandbox.run(["init", "--port", &free.port().to_string()]);
    run.assert_exit(0);
    assert!(
        run.stdout.contains("no process holds port"),
        "{}",
        run.describe()
    );
    let path = sandbox.work_dir().join("portguard.toml");
    assert_passes_its_checks(&sandbox, &path);
    let policy = parsed(&path);
    rule(&policy, "dev-server");
    assert_eq!(
        policy["rule"].as_array().unwrap().len(),
        4,
        "no holder rule"
    );
}

#[test]
fn init_port_refuses_another_users_holder_by_name() {
    let Some(builder) = Holder::tcp("127.0.0.1").run_as("nobody") else {
        eprintln!("skipped: needs root to start another user's process");
        return;
    };
    let holder = builder.spawn();
    let port = holder.port().to_string();
    let sandbox = Sandbox::new();
    let run = sandbox.run(["init", "--port", &port]);
    run.assert_exit(0);
    assert!(
        run.stdout.contains("refuses to touch it"),
        "{}",
        run.describe()
    );
    let path = sandbox.work_dir().join("portguard.toml");
    assert_passes_its_checks(&sandbox, &path);
    let policy = parsed(&path);
    let name = holder_rule_name(&policy);
    let r = rule(&policy, &name);
    assert_eq!(r["action"].as_str(), Some("refuse"));
    // "nobody", or a list with it: discovery may add the socket's creator
    // (root) as an owner it cannot see when the holder dropped privileges.
    let users = &r["match"]["user"];
    assert!(
        users.as_str() == Some("nobody")
            || users
                .as_array()
                .is_some_and(|a| a.iter().any(|u| u.as_str() == Some("nobody"))),
        "{}",
        fs::read_to_string(&path).unwrap()
    );
    let case = &policy["test"][0];
    assert!(case["owners"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["user"].as_str() == Some("nobody")
            && o["pid"].as_integer() == Some(i64::from(holder.pid()))));

    let resolve = sandbox.run(["resolve", &port, "--format", "json"]);
    resolve.assert_exit(4);
    assert_eq!(
        resolve.port(holder.port())["rule"].as_str(),
        Some(name.as_str())
    );
    assert!(
        resolve.port(holder.port())["message"]
            .as_str()
            .is_some_and(|m| m.contains("of user nobody, not yours")),
        "{}",
        resolve.describe()
    );
    assert!(holder.is_alive());
}

#[test]
fn init_port_takes_one_valid_port() {
    for bad in ["0", "65536", "abc", "3000-3001"] {
        let sandbox = Sandbox::new();
        let run = sandbox.run(["init", "--port", bad]);
        run.assert_exit(2);
        assert!(run.stderr.contains(bad), "{}", run.describe());
        assert!(fs::read_dir(sandbox.work_dir()).unwrap().next().is_none());
    }
}

#[test]
fn init_udp_port_writes_a_udp_case_for_the_udp_holder() {
    let holder = Holder::udp("127.0.0.1").spawn();
    let port = holder.port().to_string();
    let sandbox = Sandbox::new();
    let run = sandbox.run(["init", "--udp", "--port", &port]);
    run.assert_exit(0);
    assert!(
        run.stdout
            .contains(&format!("portguard resolve {port} --udp --explain")),
        "{}",
        run.describe()
    );
    let path = sandbox.work_dir().join("portguard.toml");
    assert_passes_its_checks(&sandbox, &path);
    let policy = parsed(&path);
    assert_eq!(policy["test"][0]["protocol"].as_str(), Some("udp"));
    let explain = sandbox.run(["resolve", &port, "--udp", "--explain", "--format", "json"]);
    explain.assert_exit(0);
    assert_eq!(
        explain.port(holder.port())["rule"].as_str(),
        Some(holder_rule_name(&policy).as_str())
    );
    assert!(holder.is_alive());
}
