//! The command line every node binary shares: help, bad flags, and a config
//! the binary cannot serve.

use std::process::{Command, Output};

fn torpor(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_torpor"))
        .args(args)
        .env_remove("TORPOR_CONFIG")
        .output()
        .unwrap()
}

#[test]
fn help_lists_the_subcommands_and_flags_and_exits_0() {
    let output = torpor(&["--help"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    for word in [
        "bill",
        "token",
        "dev",
        "--config",
        "--http",
        "TORPOR_HTTP",
        "--edges",
    ] {
        assert!(stdout.contains(word), "--help lacks {word}: {stdout}");
    }
    // The roles the supervisor starts are not for people.
    assert!(!stdout.contains("worker "), "{stdout}");
}

#[test]
fn a_bad_flag_exits_64_and_names_it() {
    let output = torpor(&["--nope"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("--nope"), "{stderr}");
}

#[test]
fn a_config_naming_a_class_the_binary_lacks_is_refused_at_start_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("torpor.toml");
    let text = format!(
        "data_dir = {:?}\n[listen]\nhttp = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
         [[namespaces]]\nname = \"ROOMS\"\nclass = \"ChatRoom\"\n\
         [[namespaces]]\nname = \"SHOPS\"\nclass = \"Shop\"\n\
         [[routes]]\npath = \"/shops/{{name}}\"\nnamespace = \"SHOPS\"\n",
        dir.path().join("data")
    );
    std::fs::write(&config, text).unwrap();
    let output = torpor(&["--config", config.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("namespaces[1].class") && stderr.contains("\"Shop\""),
        "{stderr}"
    );
    assert!(stderr.contains("ChatRoom, Counter, Echo"), "{stderr}");
    assert!(String::from_utf8_lossy(&output.stdout).is_empty());
}
