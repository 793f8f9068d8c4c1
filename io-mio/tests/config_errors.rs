//! A configuration the daemon cannot run with stops it before it listens, with the file and
//! line at fault; `--test-config` checks a configuration without starting.

mod common;

use common::*;
use std::path::Path;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `midge -c FILE` with an error at line N exits non-zero, says `FILE:N:`, and never listened.
#[test]
fn bad_config_stops_the_daemon_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "listener 0 127.0.0.1\nallow_anonymous maybe\n",
            2,
            "allow_anonymous",
        ),
        (
            "# comment\n\nlistener 0 127.0.0.1\nmax_inflight_messages lots\n",
            4,
            "max_inflight_messages",
        ),
        ("listener 70000 127.0.0.1\n", 1, "port"),
        (
            "listener 0 127.0.0.1\ncertfile /nonexistent/cert.pem\n",
            2,
            "keyfile",
        ),
    ];
    for (i, (text, line, mentions)) in cases.into_iter().enumerate() {
        let file = write(dir.path(), &format!("bad{i}.conf"), text);
        let out = run_midge(&["-c", &file]);
        let err = stderr(&out);
        assert!(!out.status.success(), "{text:?} was accepted");
        assert!(
            err.contains(&format!("{file}:{line}:")),
            "{text:?}: expected {file}:{line}: in {err}"
        );
        assert!(
            err.contains(mentions),
            "{text:?}: expected {mentions} in {err}"
        );
        assert!(!err.contains("listening on"), "listened despite {text:?}");
    }
}

/// An unknown option is an error naming it and its line, in the main file and in an included
/// one.
#[test]
fn unknown_option_is_an_error_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "unknown.conf",
        "listener 0 127.0.0.1\nallow_anonymous true\nfrobnicate_level 11\n",
    );
    let out = run_midge(&["-c", &file]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains(&format!("{file}:3:")), "{err}");
    assert!(err.contains("frobnicate_level"), "{err}");
    assert!(!err.contains("listening on"), "{err}");

    let conf_d = dir.path().join("conf.d");
    std::fs::create_dir(&conf_d).unwrap();
    let included = write(&conf_d, "10-extra.conf", "\n\nwibble on\n");
    let file = write(
        dir.path(),
        "main.conf",
        &format!(
            "listener 0 127.0.0.1\nallow_anonymous true\ninclude_dir {}\n",
            conf_d.display()
        ),
    );
    let out = run_midge(&["-c", &file, "--test-config"]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains(&format!("{included}:3:")), "{err}");
    assert!(err.contains("wibble"), "{err}");
}

/// `--test-config` exits 0 with "configuration OK" for a good configuration (without
/// listening), and non-zero with the error for a bad one.
#[test]
fn test_config_checks_without_running() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("midge test CA");
    let passwd = dir.path().join("passwd");
    add_password(&passwd, "alice", "secret", true);
    let acl = write(dir.path(), "acl", "user alice\ntopic readwrite alice/#\n");
    let good = write(
        dir.path(),
        "good.conf",
        &format!(
            "per_listener_settings false\nallow_anonymous false\npassword_file {}\nacl_file {acl}\n\
             listener 0 127.0.0.1\n\
             listener 0 127.0.0.1\n{}\
             listener 0 {}\n",
            passwd.display(),
            pki.write_server_files(dir.path(), true),
            dir.path().join("sock").display()
        ),
    );
    for flag in ["--test-config", "-t"] {
        let out = run_midge(&["-c", &good, flag]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("configuration OK"),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(!stderr(&out).contains("listening on"));
        assert!(
            !dir.path().join("sock").exists(),
            "--test-config created a socket"
        );
    }

    let bad = write(
        dir.path(),
        "bad.conf",
        "listener 0 127.0.0.1\nallow_anonymous true\nmax_queued_messages -5x\n",
    );
    let out = run_midge(&["-c", &bad, "--test-config"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!("{bad}:3:")),
        "{}",
        stderr(&out)
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("configuration OK"));

    // Files the configuration names are checked too: a missing password file.
    let missing = write(
        dir.path(),
        "missing.conf",
        &format!(
            "listener 0 127.0.0.1\npassword_file {}\n",
            dir.path().join("nope").display()
        ),
    );
    let out = run_midge(&["-c", &missing, "--test-config"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("nope"), "{}", stderr(&out));
}

/// A configuration file that does not exist is an error, not a default configuration.
#[test]
fn missing_config_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("absent.conf").display().to_string();
    let out = run_midge(&["-c", &file]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains(&file), "{}", stderr(&out));
}

/// Bridge sections: a mistake stops the daemon with its line, and `--test-config` reads the
/// bridge's TLS files, so a missing or bad one is found before the first connection attempt.
#[test]
fn bridge_errors_and_tls_files_are_found_with_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = "listener 0 127.0.0.1\nallow_anonymous true\nconnection up\naddress 127.0.0.1:1\n";
    let cases = [
        (format!("{bridge}topic a/# sideways\n"), 5, "direction"),
        (
            format!("{bridge}topic a\nstart_type lazy\n"),
            6,
            "start_type lazy",
        ),
        (
            "listener 0 127.0.0.1\nkeepalive_interval 30\n".to_owned(),
            2,
            "connection line",
        ),
        (
            format!("{bridge}topic a\nbridge_cafile /nonexistent/ca.pem\n"),
            6,
            "/nonexistent/ca.pem",
        ),
        (
            format!(
                "{bridge}topic a\nbridge_cafile {}\n",
                write(dir.path(), "not-a-ca.pem", "hello\n")
            ),
            6,
            "no CA certificate",
        ),
    ];
    for (i, (text, line, mentions)) in cases.into_iter().enumerate() {
        let file = write(dir.path(), &format!("bridge{i}.conf"), &text);
        for args in [vec!["-c", &file], vec!["-c", &file, "--test-config"]] {
            let out = run_midge(&args);
            let err = stderr(&out);
            assert!(!out.status.success(), "{text:?} was accepted");
            assert!(
                err.contains(&format!("{file}:{line}:")),
                "{text:?}: expected {file}:{line}: in {err}"
            );
            assert!(
                err.contains(mentions),
                "{text:?}: expected {mentions} in {err}"
            );
            assert!(!err.contains("listening on"), "listened despite {text:?}");
        }
    }

    // Good TLS files pass.
    let pki = Pki::new("bridge CA");
    let client = pki.client("bridge");
    let ca = write(dir.path(), "ca.pem", &pki.ca_pem());
    let cert = write(dir.path(), "client.pem", &client.cert);
    let key = write(dir.path(), "client.key", &client.key);
    let good = write(
        dir.path(),
        "good.conf",
        &format!(
            "{bridge}topic a\nbridge_cafile {ca}\nbridge_certfile {cert}\nbridge_keyfile {key}\n"
        ),
    );
    let out = run_midge(&["-c", &good, "--test-config"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // A key that does not match is found too, at the certfile's line.
    let other = pki.client("other");
    let wrong_key = write(dir.path(), "other.key", &other.key);
    let bad = write(
        dir.path(),
        "badkey.conf",
        &format!(
            "{bridge}topic a\nbridge_cafile {ca}\nbridge_certfile {cert}\n\
             bridge_keyfile {wrong_key}\n"
        ),
    );
    let out = run_midge(&["-c", &bad, "--test-config"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "a mismatched key was accepted");
    assert!(err.contains(&format!("{bad}:7:")), "{err}");
}
