//! Target `config_files`: the daemon's mosquitto.conf, password file and ACL file parsers.
//!
//! The same input is read as each of the three files: real files of one kind make good seeds
//! for the others (comments, blank lines, `user` and `topic` lines, odd whitespace). Each parser
//! must either accept the text or refuse it with an error that says what is wrong and on which
//! line; what it accepts must behave (a password file written back reads back the same).

use midge::acl::{Access, AclFile};
use midge::config;
use midge::passwd::{PasswdError, PasswordFile};
use std::path::Path;

/// Parses the input as a mosquitto.conf, a password file and an ACL file.
pub fn config_files(data: &[u8]) {
    // The daemon reads files as bytes, line by line; the parsers take text. Bytes that are not
    // UTF-8 become U+FFFD, which the parsers must handle like any other character.
    let text = String::from_utf8_lossy(data);
    let lines = text.split('\n').count();
    mosquitto_conf(&text, lines);
    password_file(&text, lines);
    acl_file(&text, lines);
}

fn mosquitto_conf(text: &str, lines: usize) {
    // `include_dir` reads directories of the machine running the target, which would make
    // the target depend on that machine's files; the option's own parsing is covered by the
    // daemon's tests.
    if text.contains("include_dir") {
        return;
    }
    // A directory that does not exist: nothing the text names can resolve to a real file.
    let origin = Path::new("/nonexistent-midge-fuzz/mosquitto.conf");
    match config::parse_str(text, origin) {
        Ok(conf) => {
            assert!(
                !conf.listeners.is_empty(),
                "a parsed configuration always has a listener"
            );
            for listener in &conf.listeners {
                let _ = conf.security_for(listener);
                let _ = conf.allow_anonymous(listener);
                let _ = listener.to_string();
            }
        }
        Err(e) => {
            assert!(!e.message.is_empty(), "an error says what is wrong: {e:?}");
            assert!(
                e.line <= lines,
                "error on line {} of a {lines}-line file: {e}",
                e.line
            );
            let _ = e.to_string();
        }
    }
}

fn password_file(text: &str, lines: usize) {
    match PasswordFile::parse(text, "passwd") {
        Ok(file) => {
            // Written back, the file reads back with the same users and hashes: the daemon's
            // password command rewrites files this way.
            let written = file.to_string();
            let again = PasswordFile::parse(&written, "written")
                .unwrap_or_else(|e| panic!("a written password file does not parse: {e}"));
            let users: Vec<&str> = file.usernames().collect();
            assert_eq!(users, again.usernames().collect::<Vec<_>>());
            assert_eq!(file.len(), users.len());
            for user in users {
                let hash = file.hash_of(user).map(|h| h.to_string());
                assert!(hash.is_some(), "user {user:?} listed without a hash");
                assert_eq!(hash, again.hash_of(user).map(|h| h.to_string()));
            }
        }
        Err(PasswdError::Parse { line, error, .. }) => {
            assert!(
                (1..=lines).contains(&line),
                "error on line {line} of a {lines}-line file: {error}"
            );
            assert!(!error.to_string().is_empty());
        }
        Err(e) => panic!("parsing text fails with a non-parse error: {e}"),
    }
}

fn acl_file(text: &str, lines: usize) {
    match AclFile::parse(text, "acl") {
        Ok(acl) => {
            // Checking never panics, whatever the rules and the topic; the words of the input
            // are topics and names that the rules are likely to mention.
            let words: Vec<&str> = text.split_whitespace().take(8).collect();
            let names = [("client", None), ("client", Some("user"))]
                .into_iter()
                .chain(words.iter().map(|w| (*w, Some(*w))));
            for (client_id, username) in names {
                for topic in words.iter().copied().chain(["a/b", "$SYS/x", "$share/g/#"]) {
                    for access in [Access::Read, Access::Write, Access::Subscribe] {
                        let _ = acl.check(client_id, username, access, topic);
                    }
                }
            }
        }
        Err(e) => {
            let message = e.to_string();
            assert!(!message.is_empty());
            if let midge::acl::AclError::Parse { line, .. } = e {
                assert!(
                    (1..=lines).contains(&line),
                    "error on line {line} of a {lines}-line file: {message}"
                );
            }
        }
    }
}
