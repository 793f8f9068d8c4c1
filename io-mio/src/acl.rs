//! Mosquitto-compatible ACL files (acl_file).
//!
//! The syntax and meaning are those of Mosquitto 2.0's built-in ACL file (`aclfile__parse` and
//! `mosquitto_acl_check_default` in `src/security_default.c`, `acl__check_dollar` in
//! `src/security.c`, and the acl_file section of mosquitto.conf(5)), so a file moves between
//! the two brokers unchanged and means the same thing:
//!
//! ```text
//! # A comment: '#' in the first column.
//! topic [read|write|readwrite|deny] TOPIC     access defaults to readwrite
//! user USERNAME                               later topic lines are this user's
//! pattern [read|write|readwrite|deny] TOPIC   for every client; %c = client id, %u = username
//! ```
//!
//! - `topic` lines before the first `user` line apply to anonymous clients (no username) only,
//!   not to everyone. A client with a username gets the lines of its own `user` sections (two
//!   sections for the same user are merged) and nothing else besides the patterns.
//! - A request is allowed when a rule matches it and grants that kind of access; with no such
//!   rule it is denied. A matching `deny` rule wins over grants in the same list, but the
//!   client's own (user or anonymous) list is decided first: a topic its list allows is allowed
//!   even if a pattern would deny it, and a topic its list denies is denied even if a pattern
//!   grants it.
//! - Patterns: `%c` and `%u` are replaced by the client id and username wherever they occur.
//!   A pattern with `%u` never matches an anonymous client. If the file has any pattern and the
//!   client id or username contains `+` or `#`, patterns give that client nothing (CVE-2017-7650),
//!   so such a client cannot turn `devices/%c/#` into `devices/#/#`. A '/' is substituted like any
//!   other character, as Mosquitto has done since 1.4.13.
//! - Topics starting with '$' are matched only by rules that start with '$' (`#` does not give
//!   `$SYS`). Independently of the file, clients may not publish to `$SYS` (except a bridge's
//!   `$SYS/broker/connection/+/state`) and may not publish or receive on `$share` topics.
//! - Lines are split on single spaces as Mosquitto splits them: a tab is not a separator, a topic
//!   or username may contain spaces, and `topic read` alone grants readwrite on a topic named
//!   "read". Leading spaces before a keyword are skipped; an indented `#` is not a comment.
//!
//! Subscriptions are where midge cannot simply copy Mosquitto: its ACL file never refuses a
//! SUBSCRIBE (subscription checks were switched off in 1.3.5 and are still a FIXME in
//! `mosquitto_acl_check_default`) and instead
//! filters each delivery with a read check. midge filters deliveries the same way
//! ([`Access::Read`]), and in addition refuses a subscription that could never deliver anything
//! under the file: one whose filter overlaps no topic the client may read. Every message
//! Mosquitto would deliver is still delivered. The difference is only that a subscription
//! Mosquitto would accept and never serve gets a "not authorized" reason code. A broader filter
//! that partly overlaps readable topics, such as `sensors/#` with `topic read sensors/+/temp`,
//! is granted, as in Mosquitto, and only the readable messages are delivered.

use crate::passwd::{ReadError, read_text};
use midge_core::codec::topic::{is_valid_filter, matches as topic_matches};
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Longest topic Mosquitto accepts in an ACL file, in bytes.
const MAX_TOPIC_LEN: usize = 65535;
/// Most '/' separators Mosquitto accepts in a topic (`TOPIC_HIERARCHY_LIMIT`).
const MAX_TOPIC_SEPARATORS: usize = 200;

/// What a client wants to do with a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A message delivered to the client, checked against the message's topic name.
    Read,
    /// A PUBLISH from the client, checked against its topic name.
    Write,
    /// A SUBSCRIBE topic filter (which may contain `+` and `#`, or be a `$share/GROUP/FILTER`
    /// shared subscription).
    Subscribe,
}

/// What a rule grants: Mosquitto's access bits, with deny as no bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grant {
    Deny,
    Read,
    Write,
    ReadWrite,
}

impl Grant {
    fn parse(word: &str) -> Option<Grant> {
        match word {
            "read" => Some(Grant::Read),
            "write" => Some(Grant::Write),
            "readwrite" => Some(Grant::ReadWrite),
            "deny" => Some(Grant::Deny),
            _ => None,
        }
    }

    fn allows_read(self) -> bool {
        matches!(self, Grant::Read | Grant::ReadWrite)
    }

    fn allows_write(self) -> bool {
        matches!(self, Grant::Write | Grant::ReadWrite)
    }
}

/// One `topic` or `pattern` line.
#[derive(Debug, Clone)]
struct Rule {
    grant: Grant,
    topic: String,
}

/// A rule list in checking order: Mosquitto moves `deny` rules to the front of their list, so a
/// matching deny is always seen before a matching grant.
#[derive(Debug, Clone, Default)]
struct RuleList {
    rules: Vec<Rule>,
}

impl RuleList {
    fn push(&mut self, rule: Rule) {
        if rule.grant == Grant::Deny {
            let first_grant = self.rules.iter().position(|r| r.grant != Grant::Deny);
            self.rules
                .insert(first_grant.unwrap_or(self.rules.len()), rule);
        } else {
            self.rules.push(rule);
        }
    }
}

/// A parsed ACL file.
#[derive(Debug, Clone, Default)]
pub struct AclFile {
    /// `topic` lines before the first `user` line: for clients without a username.
    anonymous: RuleList,
    /// `topic` lines after `user NAME` lines.
    users: HashMap<String, RuleList>,
    /// `pattern` lines, for every client.
    patterns: RuleList,
}

/// What is wrong with one line of an ACL file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineError {
    /// `topic` or `pattern` with nothing after it.
    EmptyTopic,
    /// The access word is not read, write, readwrite or deny.
    InvalidAccess(String),
    /// The topic is not a valid topic filter (misplaced `+` or `#`, too long, too deep).
    InvalidTopic(String),
    /// `user` with no name.
    MissingUsername,
    /// The line does not start with `topic`, `pattern`, `user` or `#`.
    InvalidLine,
    /// The line is not valid UTF-8 (MQTT topics and usernames always are).
    InvalidUtf8,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineError::EmptyTopic => f.write_str("empty topic"),
            LineError::InvalidAccess(word) => write!(
                f,
                "invalid topic access type \"{word}\" (expected read, write, readwrite or deny)"
            ),
            LineError::InvalidTopic(topic) => write!(f, "invalid ACL topic \"{topic}\""),
            LineError::MissingUsername => f.write_str("missing username"),
            LineError::InvalidLine => f.write_str(
                "invalid line: expected topic, pattern, user or a '#' comment \
                 (fields are separated by spaces, not tabs)",
            ),
            LineError::InvalidUtf8 => f.write_str("line is not valid UTF-8"),
        }
    }
}

/// Errors from loading or parsing an ACL file.
#[derive(Debug)]
pub enum AclError {
    /// Reading the file failed.
    Io { path: PathBuf, source: io::Error },
    /// A line is not valid; `line` counts from 1.
    Parse {
        origin: String,
        line: usize,
        error: LineError,
    },
}

impl fmt::Display for AclError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AclError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            AclError::Parse {
                origin,
                line,
                error,
            } => write!(f, "{origin}:{line}: {error}"),
        }
    }
}

impl std::error::Error for AclError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AclError::Io { source, .. } => Some(source),
            AclError::Parse { .. } => None,
        }
    }
}

/// One meaningful line, before it is added to the file.
#[derive(Debug, PartialEq, Eq)]
enum Directive<'a> {
    Topic { grant: Grant, topic: &'a str },
    Pattern { grant: Grant, topic: &'a str },
    User(&'a str),
}

impl AclFile {
    /// Reads and parses the file at `path`; errors name the file and line.
    pub fn load(path: impl AsRef<Path>) -> Result<AclFile, AclError> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        let text = read_text(path).map_err(|e| match e {
            ReadError::Io(source) => AclError::Io {
                path: path.to_path_buf(),
                source,
            },
            ReadError::InvalidUtf8 { line } => AclError::Parse {
                origin: origin.clone(),
                line,
                error: LineError::InvalidUtf8,
            },
        })?;
        AclFile::parse(&text, &origin)
    }

    /// Parses ACL file text; `origin` names it in errors (usually the path). A file with no rules
    /// at all is valid and denies everything, as in Mosquitto since 1.5.6 (CVE-2018-12550).
    pub fn parse(text: &str, origin: &str) -> Result<AclFile, AclError> {
        let mut file = AclFile::default();
        let mut user: Option<String> = None;
        for (i, line) in text.split('\n').enumerate() {
            let directive = parse_line(line).map_err(|error| AclError::Parse {
                origin: origin.to_string(),
                line: i + 1,
                error,
            })?;
            match directive {
                None => {}
                Some(Directive::User(name)) => user = Some(name.to_string()),
                Some(Directive::Topic { grant, topic }) => {
                    let list = match &user {
                        Some(name) => file.users.entry(name.clone()).or_default(),
                        None => &mut file.anonymous,
                    };
                    list.push(Rule {
                        grant,
                        topic: topic.to_string(),
                    });
                }
                Some(Directive::Pattern { grant, topic }) => {
                    if !topic.contains("%c") && !topic.contains("%u") {
                        tracing::warn!(
                            "{origin}:{}: ACL pattern \"{topic}\" does not contain %c or %u",
                            i + 1
                        );
                    }
                    file.patterns.push(Rule {
                        grant,
                        topic: topic.to_string(),
                    });
                }
            }
        }
        Ok(file)
    }

    /// Whether the client `client_id`, connected as `username` (`None` for anonymous), may do
    /// `access` on `topic` (a topic name for [`Access::Read`] and [`Access::Write`], a filter for
    /// [`Access::Subscribe`]). See the module documentation for the rules.
    ///
    /// A granted subscription does not mean every matching message may be delivered: each
    /// delivery, retained messages included, must be checked with [`Access::Read`].
    pub fn check(
        &self,
        client_id: &str,
        username: Option<&str>,
        access: Access,
        topic: &str,
    ) -> bool {
        let client = Client {
            id: client_id,
            username,
        };
        match access {
            Access::Read | Access::Write => {
                dollar_rules_allow(access, topic) && self.check_topic(client, access, topic)
            }
            Access::Subscribe => match shared_subscription_filter(topic) {
                Some(filter) => self.check_subscription(client, filter),
                None => false,
            },
        }
    }

    /// The client's own list: its user section, or the anonymous rules.
    fn own_rules(&self, username: Option<&str>) -> &[Rule] {
        match username {
            Some(name) => self.users.get(name).map_or(&[], |list| &list.rules),
            None => &self.anonymous.rules,
        }
    }

    /// Whether patterns may be used for this client: not when the file has patterns and the
    /// client id or username contains a wildcard that substitution would smuggle into them.
    fn patterns_usable(&self, client: Client<'_>) -> bool {
        let dangerous = |name: &str| name.contains(['+', '#']);
        let refused = !self.patterns.rules.is_empty()
            && (dangerous(client.id) || client.username.is_some_and(dangerous));
        if refused {
            tracing::debug!(
                client_id = client.id,
                username = client.username,
                "ACL patterns refuse a client whose client id or username contains + or #"
            );
        }
        !refused
    }

    /// Calls `visit` with each pattern's access and topic, filled in for `client`, in checking
    /// order, until it returns something. Patterns needing a username the client lacks are
    /// skipped. Runs on every delivery, so it reuses one buffer instead of allocating per rule.
    fn find_in_patterns<T>(
        &self,
        client: Client<'_>,
        mut visit: impl FnMut(Grant, &str) -> Option<T>,
    ) -> Option<T> {
        let mut buf = String::new();
        for rule in &self.patterns.rules {
            let topic = if rule.topic.contains('%') {
                if !substitute_into(&mut buf, &rule.topic, client.id, client.username) {
                    continue;
                }
                buf.as_str()
            } else {
                rule.topic.as_str()
            };
            if let Some(found) = visit(rule.grant, topic) {
                return Some(found);
            }
        }
        None
    }

    /// Mosquitto's decision for a topic name: the client's own list, then the patterns; the
    /// first matching deny refuses, the first matching grant with the wanted bit allows.
    fn check_topic(&self, client: Client<'_>, access: Access, topic: &str) -> bool {
        let decide = |grant: Grant, rule: &str| {
            if !rule_matches(rule, topic) {
                None
            } else if grant == Grant::Deny {
                Some(false)
            } else {
                let wanted = match access {
                    Access::Write => grant.allows_write(),
                    Access::Read | Access::Subscribe => grant.allows_read(),
                };
                wanted.then_some(true)
            }
        };
        let own = self.own_rules(client.username);
        if let Some(decision) = own.iter().find_map(|r| decide(r.grant, &r.topic)) {
            return decision;
        }
        self.patterns_usable(client) && self.find_in_patterns(client, decide).unwrap_or(false)
    }

    /// Grants a subscription that could deliver at least one message the client may read (see
    /// the module documentation). It errs towards granting: a filter whose readable part is
    /// entirely denied by several deny rules together is granted, and its deliveries are then
    /// refused one by one, as in Mosquitto.
    fn check_subscription(&self, client: Client<'_>, filter: &str) -> bool {
        let denies_all = |grant: Grant, rule: &str| {
            (grant == Grant::Deny && filter_covers(rule, filter)).then_some(())
        };
        let may_read = |grant: Grant, rule: &str| {
            (grant.allows_read() && filters_overlap(rule, filter)).then_some(())
        };
        let own = self.own_rules(client.username);
        // Every topic of the filter is refused by the client's own list before patterns are
        // consulted.
        if own.iter().any(|r| denies_all(r.grant, &r.topic).is_some()) {
            return false;
        }
        if own.iter().any(|r| may_read(r.grant, &r.topic).is_some()) {
            return true;
        }
        self.patterns_usable(client)
            && self.find_in_patterns(client, denies_all).is_none()
            && self.find_in_patterns(client, may_read).is_some()
    }
}

/// Who is asking.
#[derive(Debug, Clone, Copy)]
struct Client<'a> {
    id: &'a str,
    username: Option<&'a str>,
}

/// Parses one line; `Ok(None)` for comments and blank lines. Follows `aclfile__parse`: trailing
/// white space is dropped, then the line is cut at single spaces with strtok semantics.
fn parse_line(line: &str) -> Result<Option<Directive<'_>>, LineError> {
    let line = line.trim_end_matches(is_c_space);
    if line.starts_with('#') {
        return Ok(None);
    }
    let Some((keyword, rest)) = next_token(line) else {
        return Ok(None);
    };
    match keyword {
        "topic" | "pattern" => {
            let (grant, topic) = parse_access_and_topic(rest)?;
            check_topic(topic)?;
            Ok(Some(if keyword == "topic" {
                Directive::Topic { grant, topic }
            } else {
                Directive::Pattern { grant, topic }
            }))
        }
        "user" => match rest.map(|r| r.trim_matches(is_c_space)) {
            Some(name) if !name.is_empty() => Ok(Some(Directive::User(name))),
            _ => Err(LineError::MissingUsername),
        },
        _ => Err(LineError::InvalidLine),
    }
}

/// After `topic`/`pattern`: one word and the rest of the line makes access and topic; a single
/// word is the topic with readwrite access.
fn parse_access_and_topic(rest: Option<&str>) -> Result<(Grant, &str), LineError> {
    let (first, topic) = rest.and_then(next_token).ok_or(LineError::EmptyTopic)?;
    let Some(topic) = topic else {
        return Ok((Grant::ReadWrite, first));
    };
    let grant = Grant::parse(first).ok_or_else(|| LineError::InvalidAccess(first.into()))?;
    Ok((grant, topic.trim_matches(is_c_space)))
}

/// The checks of `mosquitto_sub_topic_check`, which Mosquitto applies to ACL topics.
fn check_topic(topic: &str) -> Result<(), LineError> {
    let valid = is_valid_filter(topic)
        && topic.len() <= MAX_TOPIC_LEN
        && topic.matches('/').count() <= MAX_TOPIC_SEPARATORS;
    if valid {
        Ok(())
    } else {
        Err(LineError::InvalidTopic(topic.to_string()))
    }
}

/// strtok(s, " ") then strtok(NULL, ""): skips leading spaces, returns the first space-delimited
/// token and whatever follows the one space that ended it (`None` when nothing does).
fn next_token(s: &str) -> Option<(&str, Option<&str>)> {
    let s = s.trim_start_matches(' ');
    if s.is_empty() {
        return None;
    }
    Some(match s.split_once(' ') {
        Some((token, rest)) if !rest.is_empty() => (token, Some(rest)),
        Some((token, _)) => (token, None),
        None => (s, None),
    })
}

/// C's isspace() in the "C" locale, which Mosquitto's trimming uses.
fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// Writes `pattern` into `out` with `%c` and `%u` replaced as Mosquitto does: anywhere in the
/// pattern, left to right. False when the pattern needs a username the client does not have.
fn substitute_into(
    out: &mut String,
    pattern: &str,
    client_id: &str,
    username: Option<&str>,
) -> bool {
    if pattern.contains("%u") && username.is_none() {
        return false;
    }
    out.clear();
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('%', Some('c')) => {
                chars.next();
                out.push_str(client_id);
            }
            ('%', Some('u')) => {
                chars.next();
                out.push_str(username.unwrap_or_default());
            }
            _ => out.push(c),
        }
    }
    true
}

/// Whether an ACL rule topic matches a topic name. Rules that do not start with '$' never match
/// '$' topics; [`topic_matches`] already refuses a leading wildcard there, and a literal first
/// level cannot equal a '$' level, so this is Mosquitto's explicit check made visible.
fn rule_matches(rule: &str, topic: &str) -> bool {
    if topic.starts_with('$') && !rule.starts_with('$') {
        return false;
    }
    topic_matches(rule, topic)
}

/// Checks Mosquitto applies to every client whatever the ACL says (`acl__check_dollar`): no
/// publishing into `$SYS` except a bridge's connection state, and `$share` topics are only for
/// subscribing.
fn dollar_rules_allow(access: Access, topic: &str) -> bool {
    if topic.starts_with("$SYS") {
        access != Access::Write || topic_matches("$SYS/broker/connection/+/state", topic)
    } else {
        !topic.starts_with("$share")
    }
}

/// The filter a subscription really receives: the part after `$share/GROUP/` for a shared
/// subscription, the whole filter otherwise. `None` for a `$share` filter with no group or
/// filter.
fn shared_subscription_filter(filter: &str) -> Option<&str> {
    let Some(rest) = filter.strip_prefix("$share/") else {
        return Some(filter);
    };
    let (group, inner) = rest.split_once('/')?;
    (!group.is_empty() && !inner.is_empty()).then_some(inner)
}

/// Whether a topic filter can match topics starting with '$' at all (4.7.2: a leading wildcard
/// cannot).
fn first_level_is_wildcard(filter: &str) -> bool {
    filter.starts_with(['+', '#'])
}

/// Whether some topic name matches both filters.
fn filters_overlap(a: &str, b: &str) -> bool {
    // A '$' topic is matched only by filters whose first level is that same literal, so a filter
    // starting with a wildcard shares no topic with one starting with '$'.
    if (first_level_is_wildcard(a) && b.starts_with('$'))
        || (first_level_is_wildcard(b) && a.starts_with('$'))
    {
        return false;
    }
    let a: Vec<&str> = a.split('/').collect();
    let b: Vec<&str> = b.split('/').collect();
    for i in 0.. {
        match (a.get(i).copied(), b.get(i).copied()) {
            (None, None) => return true,
            // "x/#" also matches its parent "x", so it meets a filter that ends one level
            // earlier, unless that parent would be the empty string, which is no topic.
            (None, Some("#")) | (Some("#"), None) => return !parent_is_empty(i, &a, &b),
            (None, Some(_)) | (Some(_), None) => return false,
            (Some("#"), Some(_)) | (Some(_), Some("#")) => return true,
            (Some(x), Some(y)) if x == "+" || y == "+" || x == y => {}
            (Some(_), Some(_)) => return false,
        }
    }
    unreachable!("the loop returns once either filter runs out")
}

/// Whether the only topic both filters' first `depth` levels can spell is the empty string: one
/// level, fixed to "" by either filter.
fn parent_is_empty(depth: usize, a: &[&str], b: &[&str]) -> bool {
    depth == 1 && (a[0].is_empty() || b[0].is_empty())
}

/// Whether every topic name matching `filter` also matches `acl` (the question Mosquitto's
/// `mosquitto_sub_matches_acl` answers).
fn filter_covers(acl: &str, filter: &str) -> bool {
    // The filter's '$' topics need an ACL that names the same '$' level, which a leading wildcard
    // does not.
    if filter.starts_with('$') && first_level_is_wildcard(acl) {
        return false;
    }
    let acl: Vec<&str> = acl.split('/').collect();
    let filter: Vec<&str> = filter.split('/').collect();
    for (i, &level) in filter.iter().enumerate() {
        match (acl.get(i).copied(), level) {
            // "x/#" covers "x" and everything below it, whatever the rest of the filter is.
            (Some("#"), _) => return true,
            (None, _) => return false,
            // A "#" whose parent is no topic (the whole filter, or "/#" whose parent would be
            // the empty string) means one more level or more, which "+/#" matches too. Any
            // other "#" also takes in its parent, which only "#" covers.
            (Some("+"), "#") => {
                let no_parent = i == 0 || parent_is_empty(i, &filter, &filter);
                return no_parent && acl[i + 1..] == ["#"];
            }
            (Some(_), "#") => return false,
            (Some("+"), _) => {}
            (Some(a), f) if a == f && f != "+" => {}
            (Some(_), _) => return false,
        }
    }
    // The filter's topics have exactly as many levels as it has; "x/#" covers "x".
    match acl.get(filter.len()) {
        None => true,
        Some(&next) => next == "#",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FIXTURE: &str = include_str!("../tests/fixtures/passwd_acl/example.acl");

    fn acl(text: &str) -> AclFile {
        AclFile::parse(text, "test.acl").unwrap()
    }

    fn parse_err(text: &str) -> (usize, LineError) {
        match AclFile::parse(text, "test.acl") {
            Err(AclError::Parse { line, error, .. }) => (line, error),
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    /// Read, write and subscribe answers for one client and topic, as "rws" with '-' for denied.
    fn rws(file: &AclFile, id: &str, user: Option<&str>, topic: &str) -> String {
        let bit = |access, c| {
            if file.check(id, user, access, topic) {
                c
            } else {
                '-'
            }
        };
        [
            bit(Access::Read, 'r'),
            bit(Access::Write, 'w'),
            bit(Access::Subscribe, 's'),
        ]
        .iter()
        .collect()
    }

    #[test]
    fn access_words_and_default_readwrite() {
        let file = acl("user u\n\
                        topic read r\n\
                        topic write w\n\
                        topic readwrite rw\n\
                        topic plain\n\
                        topic deny d\n");
        let u = Some("u");
        assert_eq!(rws(&file, "c", u, "r"), "r-s");
        assert_eq!(rws(&file, "c", u, "w"), "-w-");
        assert_eq!(rws(&file, "c", u, "rw"), "rws");
        assert_eq!(rws(&file, "c", u, "plain"), "rws");
        assert_eq!(rws(&file, "c", u, "d"), "---");
        assert_eq!(rws(&file, "c", u, "other"), "---", "no rule: denied");
    }

    #[test]
    fn mosquitto_tokenising_quirks() {
        // One word after `topic` is the topic, even when it spells an access type.
        let file = acl("topic read\n");
        assert_eq!(rws(&file, "c", None, "read"), "rws");
        // The topic is the rest of the line and may hold spaces; extra spaces are skipped.
        let file = acl("  topic   write  a b/c  \n");
        assert!(file.check("c", None, Access::Write, "a b/c"));
        assert!(!file.check("c", None, Access::Read, "a b/c"));
        // Usernames may hold spaces too.
        let file = acl("user  John Smith \ntopic x\n");
        assert!(file.check("c", Some("John Smith"), Access::Write, "x"));
        // CRLF line endings.
        let file = acl("user u\r\ntopic read a/#\r\n");
        assert!(file.check("c", Some("u"), Access::Read, "a/b"));
    }

    #[test]
    fn comments_and_blank_lines() {
        let file = acl("# comment\n\n   \n\t\n#topic readwrite #\ntopic read a\n");
        assert_eq!(rws(&file, "c", None, "a"), "r-s");
        assert_eq!(rws(&file, "c", None, "b"), "---");
    }

    #[test]
    fn parse_errors_name_the_line() {
        assert_eq!(
            parse_err("topic a\ntopic bogus a/b\n"),
            (2, LineError::InvalidAccess("bogus".into()))
        );
        assert_eq!(parse_err("# c\ntopic\n"), (2, LineError::EmptyTopic));
        assert_eq!(parse_err("pattern   \n"), (1, LineError::EmptyTopic));
        assert_eq!(parse_err("\n\nuser\n"), (3, LineError::MissingUsername));
        assert_eq!(parse_err("user   \n"), (1, LineError::MissingUsername));
        assert_eq!(parse_err("topci read a\n"), (1, LineError::InvalidLine));
        assert_eq!(parse_err("Topic read a\n"), (1, LineError::InvalidLine));
        assert_eq!(parse_err("topic\tread\ta\n"), (1, LineError::InvalidLine));
        assert_eq!(parse_err("  # indented\n"), (1, LineError::InvalidLine));
        for bad in ["a/#/b", "a+", "a/b#", "+a"] {
            let text = format!("topic read a\npattern read {bad}\n");
            assert_eq!(
                parse_err(&text),
                (2, LineError::InvalidTopic(bad.into())),
                "{bad}"
            );
        }
        let deep = "a/".repeat(MAX_TOPIC_SEPARATORS + 1) + "a";
        assert!(matches!(
            parse_err(&format!("topic {deep}")).1,
            LineError::InvalidTopic(_)
        ));
        let err = AclFile::parse("topic read a\nfoo\n", "/etc/midge/acl")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("/etc/midge/acl:2: invalid line"), "{err}");
    }

    #[test]
    fn empty_file_denies_everything() {
        let file = acl("# nothing\n");
        assert_eq!(rws(&file, "c", None, "a"), "---");
        assert_eq!(rws(&file, "c", Some("u"), "a"), "---");
    }

    #[test]
    fn rules_before_any_user_line_are_for_anonymous_clients_only() {
        let file = acl("topic anon/#\nuser alice\ntopic alice/#\n");
        assert_eq!(rws(&file, "c", None, "anon/x"), "rws");
        assert_eq!(rws(&file, "c", None, "alice/x"), "---");
        assert_eq!(rws(&file, "c", Some("alice"), "alice/x"), "rws");
        assert_eq!(rws(&file, "c", Some("alice"), "anon/x"), "---");
        assert_eq!(rws(&file, "c", Some("bob"), "anon/x"), "---");
        // An empty username is a username, not an anonymous client.
        assert_eq!(rws(&file, "c", Some(""), "anon/x"), "---");
    }

    #[test]
    fn user_sections_are_per_user_and_merge() {
        let file = acl("user alice\ntopic read a\nuser bob\ntopic b\nuser alice\ntopic write a\n");
        assert_eq!(rws(&file, "c", Some("alice"), "a"), "rws");
        assert_eq!(rws(&file, "c", Some("alice"), "b"), "---");
        assert_eq!(rws(&file, "c", Some("bob"), "b"), "rws");
        assert_eq!(rws(&file, "c", Some("Alice"), "a"), "---", "case sensitive");
    }

    #[test]
    fn deny_wins_within_a_list_whatever_the_order() {
        let file = acl("user u\ntopic a/#\ntopic deny a/secret\ntopic read b/#\n");
        let u = Some("u");
        assert_eq!(rws(&file, "c", u, "a/x"), "rws");
        assert_eq!(rws(&file, "c", u, "a/secret"), "---");
        let file = acl("pattern readwrite %c/#\npattern deny %c/secret\n");
        assert_eq!(rws(&file, "dev", None, "dev/x"), "rws");
        assert_eq!(rws(&file, "dev", None, "dev/secret"), "---");
    }

    #[test]
    fn own_list_is_decided_before_patterns() {
        // Mosquitto checks the user's list first: its grants beat pattern denies, and its denies
        // beat pattern grants.
        let file = acl("user u\ntopic read x/#\ntopic deny y/#\npattern deny x/%u\npattern y/#\n");
        let u = Some("u");
        assert_eq!(rws(&file, "c", u, "x/u"), "r-s");
        assert_eq!(rws(&file, "c", u, "y/a"), "---");
        assert_eq!(
            rws(&file, "c", Some("v"), "y/a"),
            "rws",
            "other users get the pattern"
        );
        // A matching rule without the wanted bit does not decide: later rules still can.
        let file = acl("user u\ntopic read z\npattern write z\n");
        assert_eq!(rws(&file, "c", u, "z"), "rws");
    }

    #[test]
    fn patterns_substitute_client_id_and_username() {
        let file = acl("pattern readwrite devices/%c/#\npattern read users/%u/inbox\n");
        assert_eq!(rws(&file, "dev1", None, "devices/dev1/temp"), "rws");
        assert_eq!(rws(&file, "dev1", None, "devices/dev2/temp"), "---");
        assert_eq!(rws(&file, "dev1", Some("ann"), "users/ann/inbox"), "r-s");
        assert_eq!(rws(&file, "dev1", Some("ann"), "users/bob/inbox"), "---");
        // %u never matches an anonymous client, even with an empty or literal name.
        assert_eq!(rws(&file, "dev1", None, "users//inbox"), "---");
        assert_eq!(rws(&file, "dev1", None, "users/%u/inbox"), "---");
        // Substitution is textual, inside a level too, as in Mosquitto 2.0.
        let file = acl("pattern write x/id-%c-%u\n");
        assert!(file.check("7", Some("a"), Access::Write, "x/id-7-a"));
    }

    #[test]
    fn substitution_matches_mosquittos_scan() {
        let sub = |pattern, username| {
            let mut out = String::from("stale");
            substitute_into(&mut out, pattern, "id", username).then_some(out)
        };
        assert_eq!(sub("a/%c/%u", Some("u")).as_deref(), Some("a/id/u"));
        assert_eq!(sub("%%c/%x/%", None).as_deref(), Some("%id/%x/%"));
        assert_eq!(sub("%c%c", None).as_deref(), Some("idid"));
        assert_eq!(sub("a/%u", None), None);
        assert_eq!(sub("a/%u", Some("")).as_deref(), Some("a/"));
    }

    #[test]
    fn wildcard_in_client_id_or_username_gets_no_pattern_access() {
        let file = acl("pattern readwrite devices/%c/#\nuser evil#\ntopic read own/#\n");
        for id in ["#", "+", "a#", "dev+1"] {
            assert_eq!(
                rws(&file, id, None, &format!("devices/{id}/x")),
                "---",
                "{id}"
            );
            assert_eq!(rws(&file, id, None, "devices/victim/x"), "---", "{id}");
        }
        assert_eq!(rws(&file, "ok", Some("a+b"), "devices/ok/x"), "---");
        // Only patterns are refused: the user's own rules still apply.
        assert_eq!(rws(&file, "ok", Some("evil#"), "own/x"), "r-s");
        assert_eq!(rws(&file, "ok", Some("evil#"), "devices/ok/x"), "---");
        // Without patterns in the file, such names are not special.
        let file = acl("topic read t\n");
        assert_eq!(rws(&file, "#", None, "t"), "r-s");
    }

    #[test]
    fn slash_in_client_id_is_substituted_like_mosquitto() {
        let file = acl("pattern readwrite devices/%c/#\n");
        assert_eq!(rws(&file, "site/dev", None, "devices/site/dev/t"), "rws");
        assert_eq!(rws(&file, "site/dev", None, "devices/site/other"), "---");
    }

    #[test]
    fn dollar_topics_need_dollar_rules() {
        let file = acl("topic #\ntopic read $SYS/broker/#\n");
        assert_eq!(rws(&file, "c", None, "a/b"), "rws");
        assert_eq!(rws(&file, "c", None, "$SYS/broker/uptime"), "r-s");
        assert_eq!(rws(&file, "c", None, "$SYS/other"), "---");
        assert_eq!(rws(&file, "c", None, "$other/x"), "---");
        assert!(file.check("c", None, Access::Subscribe, "$SYS/broker/#"));
        assert!(!file.check("c", None, Access::Subscribe, "$SYS/#x"));
        let file = acl("topic +/#\n");
        assert_eq!(rws(&file, "c", None, "$SYS/x"), "---");
    }

    #[test]
    fn sys_and_share_topics_follow_mosquittos_fixed_rules() {
        let file = acl("topic read $SYS/#\n\
                        topic $share/#\n\
                        topic readwrite t\n\
                        pattern write $SYS/broker/connection/%c/state\n");
        // Whatever the file says, $SYS is read-only...
        assert_eq!(rws(&file, "c", None, "$SYS/broker/uptime"), "r-s");
        // ...except the connection state a bridge reports about itself, when the file allows it.
        assert!(file.check("br", None, Access::Write, "$SYS/broker/connection/br/state"));
        assert!(!file.check("c", None, Access::Write, "$SYS/broker/connection/br/state"));
        // A topic name starting with $share is never published or delivered; a shared
        // subscription is decided by the filter it shares.
        assert_eq!(rws(&file, "c", None, "$share/g/t"), "--s");
        assert!(!file.check("c", None, Access::Subscribe, "$share/g/u"));
    }

    #[test]
    fn read_grants_subscribe_to_narrower_and_overlapping_filters() {
        let file = acl("user u\ntopic read sensors/+/temp\ntopic write cmd/#\n");
        let sub = |f| file.check("c", Some("u"), Access::Subscribe, f);
        assert!(sub("sensors/kitchen/temp"));
        assert!(sub("sensors/+/temp"));
        // Broader than the rule, but it can deliver readable messages: granted, as in Mosquitto,
        // and each delivery is then checked.
        assert!(sub("sensors/#"));
        assert!(sub("#"));
        assert!(sub("+/+/+"));
        assert!(file.check("c", Some("u"), Access::Read, "sensors/kitchen/temp"));
        assert!(!file.check("c", Some("u"), Access::Read, "sensors/kitchen/humidity"));
        // Filters that share no topic with a readable rule are refused.
        assert!(!sub("sensors/+/humidity"));
        assert!(!sub("sensors/kitchen"));
        assert!(!sub("+/+"));
        assert!(!sub("cmd/#"), "write access does not allow subscribing");
        assert!(!sub("$SYS/#"));
    }

    #[test]
    fn deny_covering_a_filter_refuses_the_subscription() {
        let file = acl("user u\ntopic read a/#\ntopic deny a/private/#\n");
        let sub = |f| file.check("c", Some("u"), Access::Subscribe, f);
        assert!(sub("a/#"), "partly denied: granted, deliveries filtered");
        assert!(sub("a/+"));
        assert!(!sub("a/private/#"));
        assert!(!sub("a/private"));
        assert!(!sub("a/private/+/x"));
        // A pattern deny covers the filter, but the user's own read still grants it.
        let file = acl("user u\ntopic read a/#\npattern deny a/#\n");
        assert!(file.check("c", Some("u"), Access::Subscribe, "a/x"));
        let file = acl("pattern read a/#\npattern deny a/%c/#\n");
        assert!(!file.check("me", None, Access::Subscribe, "a/me/#"));
        assert!(file.check("me", None, Access::Subscribe, "a/you/#"));
    }

    #[test]
    fn subscribe_with_patterns() {
        let file = acl("pattern read devices/%c/#\n");
        assert!(file.check("d1", None, Access::Subscribe, "devices/d1/#"));
        assert!(file.check("d1", None, Access::Subscribe, "devices/+/status"));
        assert!(!file.check("d1", None, Access::Subscribe, "devices/d2/#"));
        assert!(!file.check("d#", None, Access::Subscribe, "devices/d#/#"));
        assert!(!file.check("+", None, Access::Subscribe, "devices/+/#"));
    }

    #[test]
    fn shared_subscriptions_are_checked_on_their_filter() {
        let file = acl("topic read jobs/#\n");
        let sub = |f| file.check("c", None, Access::Subscribe, f);
        assert!(sub("$share/workers/jobs/#"));
        assert!(sub("$share/workers/jobs/new"));
        assert!(!sub("$share/workers/other/#"));
        assert!(!sub("$share/workers"));
        assert!(!sub("$share//jobs/#"));
        assert!(!file.check("c", None, Access::Read, "$share/workers/jobs/new"));
    }

    #[test]
    fn fixture_file_parses_and_decides() {
        let file = AclFile::parse(FIXTURE, "example.acl").unwrap();
        // Anonymous clients: public/# read only.
        assert_eq!(rws(&file, "anon", None, "public/news"), "r-s");
        assert_eq!(rws(&file, "anon", None, "devices/anon/state"), "rws");
        // alice: everything except secrets, plus $SYS reading.
        assert_eq!(rws(&file, "a1", Some("alice"), "x/y"), "rws");
        assert_eq!(rws(&file, "a1", Some("alice"), "secrets/k"), "---");
        assert_eq!(rws(&file, "a1", Some("alice"), "$SYS/broker/uptime"), "r-s");
        // bob: writes telemetry, reads commands addressed to his username.
        assert_eq!(rws(&file, "b1", Some("bob"), "telemetry/b1"), "-w-");
        assert_eq!(rws(&file, "b1", Some("bob"), "commands/bob"), "r-s");
        assert_eq!(rws(&file, "b1", Some("bob"), "commands/alice"), "---");
    }

    #[test]
    fn load_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acl");
        std::fs::write(&path, "topic read a\n# ok\ntopic wrong a\n").unwrap();
        let err = AclFile::load(&path).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{}:3: ", path.display())), "{err}");
        assert!(matches!(
            AclFile::load(dir.path().join("missing")),
            Err(AclError::Io { .. })
        ));
    }

    #[test]
    fn overlap_and_cover_examples() {
        assert!(filters_overlap("a/+", "+/b"));
        assert!(filters_overlap("a/#", "a"));
        assert!(filters_overlap("#", "a/b/c"));
        assert!(!filters_overlap("a/+", "a"));
        assert!(!filters_overlap("#", "$SYS/x"));
        assert!(filters_overlap("$SYS/#", "$SYS/+"));
        // Mosquitto's own examples for mosquitto_sub_matches_acl (test/unit/util_topic_test.c
        // and the dynamic security plugin's sub_acl_check tests).
        assert!(!filter_covers("foo/+/bar", "foo/#"));
        assert!(filter_covers("foo/+/ba℞/#", "foo/baz/ba℞"));
        assert!(filter_covers("foo/+/ba℞/#", "foo/baz/ba℞/+"));
        assert!(filter_covers("foo/+/ba℞/#", "foo/baz/ba℞/#"));
        assert!(!filter_covers("foo/+/ba℞/#", "foo/baz/+/#"));
        assert!(filter_covers("#", "a/#"));
        assert!(!filter_covers("#", "$SYS/#"));
        assert!(filter_covers("a/#", "a"));
        assert!(!filter_covers("a/+/#", "a/#"));
        assert!(filter_covers("+/#", "#"));
        assert!(
            filter_covers("/+/#", "/#"),
            "the empty topic \"\" is not a topic"
        );
        assert!(!filters_overlap("+", "/#"));
        assert!(!filter_covers("+/+/#", "#"));
    }

    // Brute-force cross-checks against `topic_matches` over a small universe: levels drawn from
    // a, b, '$x' plus a fresh level 'z' no filter uses, up to one level deeper than the
    // longest filter, which is enough to witness every difference.
    fn universe() -> Vec<String> {
        let levels = ["a", "b", "z", "$x", ""];
        let mut topics: Vec<String> = levels.iter().map(|l| l.to_string()).collect();
        let mut last = topics.clone();
        for _ in 1..5 {
            last = last
                .iter()
                .flat_map(|t| levels.iter().map(move |l| format!("{t}/{l}")))
                .collect();
            topics.extend(last.iter().cloned());
        }
        topics.retain(|t| !t.is_empty());
        topics
    }

    fn filter_strategy() -> impl Strategy<Value = String> {
        let level = prop_oneof![
            Just("a"),
            Just("b"),
            Just("$x"),
            Just(""),
            Just("+"),
            Just("#")
        ];
        prop::collection::vec(level, 1..4)
            .prop_map(|levels| levels.join("/"))
            .prop_filter("valid filter", |f| is_valid_filter(f))
    }

    proptest! {
        // Failing cases shrink to small filters; they belong in the examples test above, not in
        // a regression file.
        #![proptest_config(ProptestConfig {
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn overlap_agrees_with_brute_force(a in filter_strategy(), b in filter_strategy()) {
            let expected = universe()
                .iter()
                .any(|t| topic_matches(&a, t) && topic_matches(&b, t));
            prop_assert_eq!(filters_overlap(&a, &b), expected);
        }

        #[test]
        fn cover_agrees_with_brute_force(acl in filter_strategy(), f in filter_strategy()) {
            let expected = universe()
                .iter()
                .all(|t| !topic_matches(&f, t) || topic_matches(&acl, t));
            prop_assert_eq!(filter_covers(&acl, &f), expected);
        }

        /// A subscription is never refused when some message it matches could be delivered.
        #[test]
        fn subscribe_never_refuses_a_deliverable_filter(
            rules in prop::collection::vec(
                (prop_oneof![Just("read"), Just("write"), Just("readwrite"), Just("deny")],
                 filter_strategy(),
                 any::<bool>()),
                0..5),
            filter in filter_strategy(),
            anonymous in any::<bool>(),
        ) {
            let mut text = String::from("user u\n");
            for (grant, topic, pattern) in &rules {
                let keyword = if *pattern { "pattern" } else { "topic" };
                let topic = if *pattern { topic.replacen('a', "%c", 1) } else { topic.clone() };
                text.push_str(&format!("{keyword} {grant} {topic}\n"));
            }
            let file = acl(&text);
            let user = (!anonymous).then_some("u");
            let deliverable = universe().iter().any(|t| {
                topic_matches(&filter, t) && file.check("a", user, Access::Read, t)
            });
            if deliverable {
                prop_assert!(file.check("a", user, Access::Subscribe, &filter), "{}", text);
            }
        }
    }
}
