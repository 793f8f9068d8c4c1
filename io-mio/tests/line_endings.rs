//! Files written on Windows end their lines with CRLF: the configuration, the password file and
//! the ACL file are read the same with CRLF as with LF, on every platform, and errors in them
//! still name the right line.

mod common;

use common::*;
use midge_core::codec::{ConnectReason, QoS};
use std::path::Path;

fn crlf(text: &str) -> String {
    text.replace('\n', "\r\n")
}

/// A daemon whose three files all use CRLF: alice (password wonderland) may read `a/#` only.
fn start(dir: &Path) -> Daemon {
    let passwd = dir.join("passwd");
    add_password(&passwd, "alice", "wonderland", true);
    let text = std::fs::read_to_string(&passwd).unwrap();
    std::fs::write(&passwd, crlf(&text)).unwrap();
    let acl = dir.join("acl");
    std::fs::write(
        &acl,
        crlf("# alice reads a/#\nuser alice\ntopic read a/#\n"),
    )
    .unwrap();
    Daemon::start(
        dir,
        &crlf(&format!(
            "# written on Windows\nlistener 0 127.0.0.1\nallow_anonymous false\n\
             password_file {}\nacl_file {}\n",
            passwd.display(),
            acl.display()
        )),
    )
}

#[test]
fn crlf_configuration_password_and_acl_files_work() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start(dir.path());
    for version in [V311, V5] {
        let options =
            |password: &str| ConnectOptions::new(version, "c").credentials("alice", Some(password));
        // The password line's CR is not part of the hash.
        let mut wrong = Client::new(tcp(daemon.addr()), version);
        assert_ne!(
            wrong.handshake(options("wrong")).reason,
            ConnectReason::Success
        );
        let mut alice = Client::new(tcp(daemon.addr()), version);
        assert_eq!(
            alice.handshake(options("wonderland")).reason,
            ConnectReason::Success
        );
        // The ACL's CR is no part of the user name nor of the filter `a/#`.
        assert!(!alice.subscribe("a/b", QoS::AtMostOnce).is_error());
        assert!(alice.subscribe("b", QoS::AtMostOnce).is_error());
        alice.disconnect();
    }
}

/// `midge passwd` adds to a CRLF file, and the daemon reads the result.
#[test]
fn midge_passwd_edits_a_crlf_password_file() {
    let dir = tempfile::tempdir().unwrap();
    let passwd = dir.path().join("passwd");
    add_password(&passwd, "alice", "wonderland", true);
    let text = std::fs::read_to_string(&passwd).unwrap();
    std::fs::write(&passwd, crlf(&text)).unwrap();
    add_password(&passwd, "bob", "builder", false);
    let daemon = Daemon::start(
        dir.path(),
        &format!(
            "listener 0 127.0.0.1\nallow_anonymous false\npassword_file {}\n",
            passwd.display()
        ),
    );
    for (user, password) in [("alice", "wonderland"), ("bob", "builder")] {
        let mut client = Client::new(tcp(daemon.addr()), V5);
        let options = ConnectOptions::new(V5, user).credentials(user, Some(password));
        assert_eq!(client.handshake(options).reason, ConnectReason::Success);
    }
}

/// Errors in CRLF files name the line they are on.
#[test]
fn errors_in_crlf_files_name_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("midge.conf");
    std::fs::write(&conf, crlf("listener 0 127.0.0.1\n\nmax_connections x\n")).unwrap();
    let out = run_midge(&["-c", conf.to_str().unwrap(), "--test-config"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The value is reported without the line's CR.
    assert!(stderr.contains("midge.conf:3: "), "{stderr}");
    assert!(stderr.contains("found \"x\"\n"), "{stderr}");

    let acl = dir.path().join("acl");
    std::fs::write(&acl, crlf("user alice\ntopic read a/#\ntopic sideways b\n")).unwrap();
    std::fs::write(
        &conf,
        crlf(&format!(
            "listener 0 127.0.0.1\nallow_anonymous true\nacl_file {}\n",
            acl.display()
        )),
    )
    .unwrap();
    let out = run_midge(&["-c", conf.to_str().unwrap(), "--test-config"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("acl:3: "), "{stderr}");
    assert!(stderr.contains("\"sideways\""), "{stderr}");
}
