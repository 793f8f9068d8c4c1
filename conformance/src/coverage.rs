//! Which normative statement each test covers, and COVERAGE.md.
//!
//! `statements.tsv` lists every statement id of MQTT 3.1.1 and 5.0 with a status:
//!
//! - `covered`: a server obligation observable from outside, with at least one test;
//! - `todo`: a server obligation observable from outside that no test covers yet;
//! - `client`: an obligation of clients only, nothing a server must do;
//! - `unobservable`: a server obligation that cannot be seen from outside the broker, with the
//!   reason in the note column;
//! - `inapplicable`: an obligation only of a server that makes a choice midge does not make
//!   (one without wildcard subscriptions, say), with the choice in the note column: midge never
//!   is in the case it governs, so there is nothing to test.
//!
//! Tests say what they cover by name: a `#[test]` function named
//! `mqtt_<a>_<b>_<c>_<n>_<v311|v5>_<what>` covers `[MQTT-a.b.c-n]` of that version. A doc
//! comment line of that test beginning `/// Covers` adds the `[MQTT-...] (3.1.1)` or
//! `[MQTT-...] (5.0)` ids it names. A doc comment line beginning `/// As a client` names, the same
//! way, statements that bind clients and that the test checks against midge acting as one (its
//! bridges, which must conform as clients [MQTT-7.0.0-1]): they keep their status (a `client`
//! statement stays one, a server obligation is not covered by them) and COVERAGE.md lists the
//! tests beside them. [`check`] fails when a statement marked covered has no test, when one not
//! marked covered has one, when a test names an id no specification has, and when COVERAGE.md
//! differs from [`render`]'s output. An `#[ignore]`d test covers nothing, on either kind of line.
//!
//! `mosquitto.tsv` records the tests Mosquitto fails (see run-against-mosquitto.sh), one line
//! each, for the section of COVERAGE.md that compares the two brokers.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The two specifications, as statements.tsv and test names spell them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    V311,
    V5,
}

impl Version {
    pub const ALL: [Version; 2] = [Version::V311, Version::V5];

    /// "3.1.1" or "5.0".
    pub fn label(self) -> &'static str {
        match self {
            Version::V311 => "3.1.1",
            Version::V5 => "5.0",
        }
    }

    fn from_label(s: &str) -> Option<Version> {
        match s {
            "3.1.1" => Some(Version::V311),
            "5.0" => Some(Version::V5),
            _ => None,
        }
    }

    fn from_name_part(s: &str) -> Option<Version> {
        match s {
            "v311" => Some(Version::V311),
            "v5" => Some(Version::V5),
            _ => None,
        }
    }

    /// How many statements the specification has (3.1.1: 140; 5.0: Appendix B, 254).
    pub fn statement_count(self) -> usize {
        match self {
            Version::V311 => 140,
            Version::V5 => 254,
        }
    }
}

/// A statement's classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Covered,
    Todo,
    Client,
    Unobservable,
    Inapplicable,
}

impl Status {
    fn parse(s: &str) -> Option<Status> {
        match s {
            "covered" => Some(Status::Covered),
            "todo" => Some(Status::Todo),
            "client" => Some(Status::Client),
            "unobservable" => Some(Status::Unobservable),
            "inapplicable" => Some(Status::Inapplicable),
            _ => None,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Status::Covered => "covered",
            Status::Todo => "not yet covered",
            Status::Client => "client only",
            Status::Unobservable => "not observable",
            Status::Inapplicable => "does not apply",
        }
    }
}

/// One line of statements.tsv.
#[derive(Debug, Clone)]
pub struct Statement {
    pub version: Version,
    /// `MQTT-a.b.c-n`.
    pub id: String,
    pub status: Status,
    /// A short paraphrase, and for `unobservable` and `inapplicable` the reason.
    pub note: String,
}

/// A statement as a key: version and id.
pub type Key = (Version, String);

/// One line of mosquitto.tsv: a test Mosquitto fails.
#[derive(Debug, Clone)]
pub struct Difference {
    pub test: String,
    pub note: String,
}

/// The conformance crate's directory (where statements.tsv and tests/ are).
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Parses statements.tsv: `version<TAB>id<TAB>status<TAB>note`, `#` comments.
pub fn parse_statements(text: &str) -> Result<Vec<Statement>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.splitn(4, '\t').collect();
        let at = || format!("statements.tsv line {}", n + 1);
        let [version, id, status, rest @ ..] = fields.as_slice() else {
            return Err(format!("{}: expected version, id, status, note", at()));
        };
        let version = Version::from_label(version)
            .ok_or_else(|| format!("{}: unknown version {version:?}", at()))?;
        if parse_id(id).is_none() {
            return Err(format!("{}: malformed id {id:?}", at()));
        }
        let status =
            Status::parse(status).ok_or_else(|| format!("{}: unknown status {status:?}", at()))?;
        let note = rest.first().map_or("", |s| s.trim()).to_owned();
        if matches!(status, Status::Unobservable | Status::Inapplicable) && note.is_empty() {
            return Err(format!("{}: {id} is {status:?} without a reason", at()));
        }
        out.push(Statement {
            version,
            id: (*id).to_owned(),
            status,
            note,
        });
    }
    Ok(out)
}

/// The numbers of `MQTT-a.b.c-n`.
fn parse_id(id: &str) -> Option<[u32; 4]> {
    let rest = id.strip_prefix("MQTT-")?;
    let (section, n) = rest.split_once('-')?;
    let mut parts = section.split('.');
    let a = parts.next()?.parse().ok()?;
    let b = parts.next()?.parse().ok()?;
    let c = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some([a, b, c, n.parse().ok()?])
}

/// Parses mosquitto.tsv: `test<TAB>note`.
pub fn parse_differences(text: &str) -> Result<Vec<Difference>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((test, note)) = line.split_once('\t') else {
            return Err(format!(
                "mosquitto.tsv line {}: expected test<TAB>note",
                n + 1
            ));
        };
        out.push(Difference {
            test: test.trim().to_owned(),
            note: note.trim().to_owned(),
        });
    }
    Ok(out)
}

/// A test found in the sources and the statements it says it covers.
#[derive(Debug, Clone)]
pub struct FoundTest {
    /// The function name.
    pub name: String,
    /// The file, relative to the crate.
    pub file: String,
    pub covers: Vec<Key>,
    /// Statements binding clients that the test checks midge against as a client (its
    /// bridges): `/// As a client` lines. They cover nothing of the server.
    pub as_client: Vec<Key>,
}

/// The statements named in a test function's name: `mqtt_a_b_c_n_v311_...`.
pub fn key_from_name(name: &str) -> Option<Key> {
    let mut parts = name.strip_prefix("mqtt_")?.splitn(6, '_');
    let mut nums = [0u32; 4];
    for n in &mut nums {
        *n = parts.next()?.parse().ok()?;
    }
    let version = Version::from_name_part(parts.next()?)?;
    let [a, b, c, n] = nums;
    Some((version, format!("MQTT-{a}.{b}.{c}-{n}")))
}

/// The `[MQTT-...] (3.1.1)` / `(5.0)` ids on a `/// Covers` line.
fn keys_from_covers_line(line: &str) -> Result<Vec<Key>, String> {
    let mut keys = Vec::new();
    let mut rest = line;
    while let Some(open) = rest.find("[MQTT-") {
        let after = &rest[open + 1..];
        let close = after
            .find(']')
            .ok_or_else(|| format!("unclosed id in {line:?}"))?;
        let id = &after[..close];
        let tail = after[close + 1..].trim_start();
        let version = if tail.starts_with("(3.1.1)") {
            Version::V311
        } else if tail.starts_with("(5.0)") {
            Version::V5
        } else {
            return Err(format!(
                "{id} in {line:?} lacks its version, (3.1.1) or (5.0)"
            ));
        };
        if parse_id(id).is_none() {
            return Err(format!("malformed id {id:?} in {line:?}"));
        }
        keys.push((version, id.to_owned()));
        rest = &after[close + 1..];
    }
    Ok(keys)
}

/// Every test under `tests/` (recursively) that covers a statement.
pub fn scan_tests(dir: &Path) -> Result<Vec<FoundTest>, String> {
    let mut files = Vec::new();
    collect_rs(&dir.join("tests"), &mut files)?;
    files.sort();
    let mut found = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let file = path
            .strip_prefix(dir)
            .unwrap_or(&path)
            .display()
            .to_string();
        scan_file(&text, &file, &mut found)?;
    }
    Ok(found)
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.is_dir() {
            collect_rs(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// Finds `#[test] fn mqtt_...` in one file, with the `/// Covers` lines of its doc comment.
fn scan_file(text: &str, file: &str, found: &mut Vec<FoundTest>) -> Result<(), String> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line.strip_prefix("fn ") else {
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        // The attributes and doc comment right above the function.
        let block: Vec<&str> = lines[..i]
            .iter()
            .rev()
            .take_while(|l| l.starts_with("#[") || l.starts_with("///"))
            .copied()
            .collect();
        // An ignored test checks nothing yet (it waits for a fix elsewhere): it covers nothing.
        if !block.contains(&"#[test]") || block.iter().any(|l| l.starts_with("#[ignore")) {
            continue;
        }
        let mut covers = Vec::new();
        let mut as_client = Vec::new();
        if let Some(key) = key_from_name(&name) {
            covers.push(key);
        } else if name.starts_with("mqtt_") {
            return Err(format!(
                "{file}: test {name} starts like a statement id but is not \
                 mqtt_<a>_<b>_<c>_<n>_<v311|v5>_..."
            ));
        }
        for doc in block.iter().rev() {
            if let Some(covers_line) = doc.strip_prefix("/// Covers") {
                covers.extend(
                    keys_from_covers_line(covers_line)
                        .map_err(|e| format!("{file}: {name}: {e}"))?,
                );
            } else if let Some(client_line) = doc.strip_prefix("/// As a client") {
                as_client.extend(
                    keys_from_covers_line(client_line)
                        .map_err(|e| format!("{file}: {name}: {e}"))?,
                );
            }
        }
        if !covers.is_empty() {
            found.push(FoundTest {
                name,
                file: file.to_owned(),
                covers,
                as_client,
            });
        }
    }
    Ok(())
}

/// Everything COVERAGE.md is made of.
#[derive(Debug)]
pub struct Inputs {
    pub statements: Vec<Statement>,
    pub tests: Vec<FoundTest>,
    pub differences: Vec<Difference>,
}

impl Inputs {
    /// Reads statements.tsv, mosquitto.tsv and the tests of the crate in `dir`.
    pub fn load(dir: &Path) -> Result<Inputs, String> {
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name)).map_err(|e| format!("cannot read {name}: {e}"))
        };
        Ok(Inputs {
            statements: parse_statements(&read("statements.tsv")?)?,
            tests: scan_tests(dir)?,
            differences: parse_differences(&read("mosquitto.tsv")?)?,
        })
    }

    /// The tests covering each statement, by statement.
    pub fn tests_by_statement(&self) -> BTreeMap<Key, Vec<&FoundTest>> {
        let mut map: BTreeMap<Key, Vec<&FoundTest>> = BTreeMap::new();
        for t in &self.tests {
            for key in &t.covers {
                map.entry(key.clone()).or_default().push(t);
            }
        }
        map
    }

    /// The tests that check midge as a client against each statement, by statement.
    pub fn client_tests_by_statement(&self) -> BTreeMap<Key, Vec<&FoundTest>> {
        let mut map: BTreeMap<Key, Vec<&FoundTest>> = BTreeMap::new();
        for t in &self.tests {
            for key in &t.as_client {
                map.entry(key.clone()).or_default().push(t);
            }
        }
        map
    }

    /// Every inconsistency between the classification and the tests, one message each.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let tests = self.tests_by_statement();
        let mut seen: BTreeMap<Key, usize> = BTreeMap::new();
        for s in &self.statements {
            *seen.entry((s.version, s.id.clone())).or_default() += 1;
        }
        for ((v, id), n) in &seen {
            if *n > 1 {
                problems.push(format!("{id} ({}) is listed {n} times", v.label()));
            }
        }
        for v in Version::ALL {
            let n = seen.keys().filter(|(sv, _)| *sv == v).count();
            if n != v.statement_count() {
                problems.push(format!(
                    "statements.tsv lists {n} statements of {}, the specification has {}",
                    v.label(),
                    v.statement_count()
                ));
            }
        }
        for s in &self.statements {
            let key = (s.version, s.id.clone());
            let has = tests.get(&key).is_some_and(|t| !t.is_empty());
            let where_ = format!("{} ({})", s.id, s.version.label());
            match (s.status, has) {
                (Status::Covered, false) => {
                    problems.push(format!("{where_} is marked covered but no test covers it"))
                }
                (Status::Todo, true) => problems.push(format!(
                    "{where_} has tests but is marked todo: mark it covered"
                )),
                (Status::Client | Status::Unobservable | Status::Inapplicable, true) => problems
                    .push(format!(
                        "{where_} is marked {} but tests name it: {}",
                        s.status.describe(),
                        names(&tests[&key])
                    )),
                _ => {}
            }
        }
        for (key, ts) in &tests {
            if !seen.contains_key(key) {
                problems.push(format!(
                    "{} names {} ({}), which the specification does not have",
                    names(ts),
                    key.1,
                    key.0.label()
                ));
            }
        }
        for (key, ts) in &self.client_tests_by_statement() {
            if !seen.contains_key(key) {
                problems.push(format!(
                    "{} checks midge as a client against {} ({}), which the specification does \
                     not have",
                    names(ts),
                    key.1,
                    key.0.label()
                ));
            }
        }
        for d in &self.differences {
            if !self.tests.iter().any(|t| t.name == d.test) {
                problems.push(format!("mosquitto.tsv names {}, which is no test", d.test));
            }
        }
        problems
    }
}

fn names(tests: &[&FoundTest]) -> String {
    tests
        .iter()
        .map(|t| format!("`{}`", t.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// COVERAGE.md.
pub fn render(inputs: &Inputs) -> String {
    let tests = inputs.tests_by_statement();
    let client_tests = inputs.client_tests_by_statement();
    let mut out = String::new();
    out.push_str(
        "# MQTT conformance coverage\n\n\
         Generated by `cargo run -p midge-conformance --bin coverage` from `statements.tsv`, \
         `mosquitto.tsv` and the test names under `tests/`; do not edit by hand (a test fails \
         when this file is out of date). Every normative statement of MQTT 3.1.1 and MQTT 5.0 \
         (Appendix B) is listed with its status:\n\n\
         - **covered**: a server obligation observable from outside, with the tests that check it;\n\
         - **not yet covered**: a server obligation observable from outside that has no test yet;\n\
         - **client only**: an obligation of clients, nothing a server must do;\n\
         - **not observable**: a server obligation that cannot be seen from outside the broker, \
         with the reason;\n\
         - **does not apply**: an obligation only of a server that makes a choice midge does not \
         make (such as not supporting wildcard subscriptions), with that choice: midge is never \
         in the case it governs, so there is nothing to test.\n\n\
         midge's bridges make it a client of other brokers, and a server that is also a client \
         must conform as both [MQTT-7.0.0-1]. Where a test checks a bridge against a statement \
         that binds clients, the statement keeps its status and the test is listed after \
         \"as a client\": that checks midge's client side only, never its server side.\n\n",
    );
    out.push_str(
        "| Version | Statements | Covered | Not yet covered | Client only | Not observable | \
         Does not apply |\n",
    );
    out.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for v in Version::ALL {
        let count = |status| {
            inputs
                .statements
                .iter()
                .filter(|s| s.version == v && s.status == status)
                .count()
        };
        let total = inputs.statements.iter().filter(|s| s.version == v).count();
        let _ = writeln!(
            out,
            "| MQTT {} | {total} | {} | {} | {} | {} | {} |",
            v.label(),
            count(Status::Covered),
            count(Status::Todo),
            count(Status::Client),
            count(Status::Unobservable),
            count(Status::Inapplicable)
        );
    }
    out.push_str("\n## Differences in Mosquitto\n\n");
    if inputs.differences.is_empty() {
        out.push_str("None recorded.\n");
    } else {
        out.push_str(
            "Tests Mosquitto fails when the suite runs against it \
             (`conformance/run-against-mosquitto.sh`):\n\n",
        );
        for d in &inputs.differences {
            let covers = inputs
                .tests
                .iter()
                .find(|t| t.name == d.test)
                .map(|t| {
                    t.covers
                        .iter()
                        .map(|(v, id)| format!("[{id}] ({})", v.label()))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            let _ = writeln!(out, "- {covers} `{}`: {}", d.test, d.note);
        }
    }
    for v in Version::ALL {
        let _ = writeln!(out, "\n## MQTT {}\n", v.label());
        out.push_str("| Statement | Status | Tests, or why not |\n| --- | --- | --- |\n");
        let mut statements: Vec<&Statement> = inputs
            .statements
            .iter()
            .filter(|s| s.version == v)
            .collect();
        statements.sort_by_key(|s| parse_id(&s.id));
        for s in statements {
            let key = (s.version, s.id.clone());
            let mut detail = match s.status {
                Status::Covered => tests.get(&key).map_or(String::new(), |t| names(t)),
                _ => s.note.clone(),
            };
            if let Some(t) = client_tests.get(&key) {
                if !detail.is_empty() {
                    detail.push_str("; ");
                }
                let _ = write!(detail, "as a client: {}", names(t));
            }
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                s.id,
                s.status.describe(),
                detail.replace('|', "\\|")
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_statement_ids() {
        assert_eq!(
            key_from_name("mqtt_3_1_0_1_v311_first_packet_must_be_connect"),
            Some((Version::V311, "MQTT-3.1.0-1".to_owned()))
        );
        assert_eq!(
            key_from_name("mqtt_3_3_1_10_v5_x"),
            Some((Version::V5, "MQTT-3.3.1-10".to_owned()))
        );
        assert_eq!(key_from_name("mqtt_3_1_0_v5_x"), None);
        assert_eq!(key_from_name("connect_works"), None);
    }

    #[test]
    fn covers_lines_need_versions() {
        assert_eq!(
            keys_from_covers_line(" [MQTT-2.3.1-7] (3.1.1) and [MQTT-3.9.2-1] (5.0).").unwrap(),
            [
                (Version::V311, "MQTT-2.3.1-7".to_owned()),
                (Version::V5, "MQTT-3.9.2-1".to_owned())
            ]
        );
        assert!(keys_from_covers_line(" [MQTT-2.3.1-7]").is_err());
    }

    #[test]
    fn scanning_finds_tests_and_their_covers_lines() {
        let src = "\
#[test]
fn mqtt_3_1_0_1_v5_first() {}

/// Something.
/// Covers [MQTT-3.2.0-1] (5.0).
/// As a client [MQTT-3.1.2-22] (5.0).
#[test]
fn mqtt_3_1_0_2_v5_second() {}

fn mqtt_3_1_0_3_v5_helper_not_a_test() {}

/// Covers [MQTT-3.2.0-2] (5.0).
#[test]
#[ignore]
fn mqtt_3_1_0_4_v5_ignored() {}
";
        let mut found = Vec::new();
        scan_file(src, "t.rs", &mut found).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found[1].covers.len(), 2);
        assert_eq!(found[1].covers[1].1, "MQTT-3.2.0-1");
        assert_eq!(found[0].as_client, []);
        assert_eq!(
            found[1].as_client,
            [(Version::V5, "MQTT-3.1.2-22".to_owned())]
        );
    }

    /// The classification and the tests agree, and COVERAGE.md is what the generator writes:
    /// a statement marked covered without a test fails here.
    #[test]
    fn coverage_is_consistent_and_up_to_date() {
        let dir = crate_dir();
        let inputs = Inputs::load(&dir).unwrap_or_else(|e| panic!("{e}"));
        let problems = inputs.problems();
        assert!(
            problems.is_empty(),
            "coverage problems:\n{}",
            problems.join("\n")
        );
        let written = std::fs::read_to_string(dir.join("COVERAGE.md")).unwrap_or_default();
        assert!(
            written == render(&inputs),
            "conformance/COVERAGE.md is out of date: run `cargo run -p midge-conformance --bin \
             coverage`"
        );
    }
}
