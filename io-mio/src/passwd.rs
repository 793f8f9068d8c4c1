//! Mosquitto-compatible password files (mosquitto_passwd).
//!
//! A password file holds one `username:hash` line per user, and may hold `#` comments and blank
//! lines, which the Mosquitto broker skips. Files move between Mosquitto and midge unchanged, so
//! the hashes are Mosquitto's own two constructions (Mosquitto 2.0, `src/password_mosq.c`,
//! `pw__hash`):
//!
//! - `$7$ITERATIONS$SALT$HASH`: PBKDF2-HMAC-SHA512 of the password with the salt, 64 bytes
//!   out. mosquitto_passwd's default since 2.0, with 101 iterations.
//! - `$6$SALT$HASH`: one SHA-512 over the password bytes followed by the salt bytes, written by
//!   Mosquitto 1.6 and earlier (and by `mosquitto_passwd -H sha512`).
//!
//! SALT and HASH are standard base64 with padding. The broker accepts an entry only when the salt
//! decodes to exactly 12 bytes and the hash to exactly 64 (`unpwd__decode_passwords` in
//! `src/security_default.c`); midge checks the same.
//!
//! midge adds a third kind of entry, for MQTT 5 enhanced authentication with SCRAM-SHA-256
//! (`midge passwd -H scram-sha-256`):
//!
//! - `$scram-sha-256$ITERATIONS$SALT$STOREDKEY$SERVERKEY`: the verifier RFC 5802 has a server
//!   keep (standard base64; StoredKey and ServerKey are 32 bytes each), never the password. Such
//!   an entry also checks a plain CONNECT password, by deriving StoredKey from it with the stored
//!   salt and iterations, so one file serves both kinds of client. Mosquitto does not know it.
//!
//! A `$6$`/`$7$` entry cannot do SCRAM (its hash is not SCRAM's verifier): that user can log in
//! with a password only, until the entry is rewritten with `-H scram-sha-256`.
//!
//! Where Mosquitto's broker logs a bad entry and carries on without it, or silently skips a line
//! without a `:`, midge refuses the whole file with the file name and line number: an entry
//! that quietly disappears locks a user out (or, for a plain-text password, leaves it
//! unprotected) with nothing but a log line to say why.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_PAD_INDIFFERENT};
use midge_core::auth::scram::{self, ScramCredential};
use sha2::{Digest, Sha512};
use std::collections::HashMap;
use std::fmt;
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use subtle::ConstantTimeEq;

/// PBKDF2 iterations mosquitto_passwd uses by default (`PW_DEFAULT_ITERATIONS`).
pub const DEFAULT_ITERATIONS: u32 = 101;
/// Salt length Mosquitto writes and requires, in bytes.
pub const SALT_LEN: usize = 12;
/// Hash length Mosquitto writes and requires (a SHA-512 output), in bytes.
pub const HASH_LEN: usize = 64;
/// Longest username and password mosquitto_passwd accepts, in bytes (MQTT's string limit).
const MAX_FIELD_LEN: usize = 65535;
/// Longest salt accepted in a SCRAM entry, in bytes (midge writes 16).
const MAX_SCRAM_SALT_LEN: usize = 1024;

/// Which of Mosquitto's constructions a hash uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashScheme {
    /// `$6$`: SHA-512 over password then salt.
    Sha512,
    /// `$7$`: PBKDF2-HMAC-SHA512 with this many iterations.
    Pbkdf2Sha512 { iterations: u32 },
    /// `$scram-sha-256$`: a SCRAM-SHA-256 verifier with this many iterations (midge only).
    ScramSha256 { iterations: u32 },
}

impl Default for HashScheme {
    /// What mosquitto_passwd writes by default.
    fn default() -> Self {
        HashScheme::Pbkdf2Sha512 {
            iterations: DEFAULT_ITERATIONS,
        }
    }
}

/// One stored password: a scheme, a salt and the hash to compare against.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    scheme: HashScheme,
    stored: Stored,
}

/// What an entry stores, by kind.
#[derive(Clone, PartialEq, Eq)]
enum Stored {
    /// Mosquitto's `$6$` and `$7$`.
    Mosquitto {
        salt: [u8; SALT_LEN],
        hash: [u8; HASH_LEN],
    },
    /// `$scram-sha-256$`.
    Scram(ScramCredential),
}

impl fmt::Debug for PasswordHash {
    // The hash is a secret's verifier: keep it out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordHash")
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

impl PasswordHash {
    /// Hashes `password` with a fresh random salt (12 bytes as Mosquitto's, 16 for SCRAM).
    ///
    /// # Panics
    /// When the operating system cannot supply random bytes, which leaves no safe way to salt.
    pub fn new(password: &[u8], scheme: HashScheme) -> PasswordHash {
        let mut salt = [0u8; scram::SALT_LEN];
        getrandom::fill(&mut salt).expect("the operating system's random number generator failed");
        PasswordHash::with_salt_bytes(password, scheme, &salt)
    }

    /// Hashes `password` with a given salt: for tests and known-answer vectors.
    pub fn with_salt(password: &[u8], scheme: HashScheme, salt: [u8; SALT_LEN]) -> PasswordHash {
        PasswordHash::with_salt_bytes(password, scheme, &salt)
    }

    /// Hashes with the first 12 bytes of `salt` for Mosquitto's schemes, and all of it (at least
    /// one byte) for SCRAM.
    fn with_salt_bytes(password: &[u8], scheme: HashScheme, salt: &[u8]) -> PasswordHash {
        let stored = match scheme {
            HashScheme::ScramSha256 { iterations } => Stored::Scram(
                // A zero iteration count is refused when parsing arguments and files.
                ScramCredential::new(password, salt, iterations.max(1))
                    .expect("a non-empty salt and at least one iteration"),
            ),
            _ => {
                let mut fixed = [0u8; SALT_LEN];
                fixed.copy_from_slice(&salt[..SALT_LEN]);
                Stored::Mosquitto {
                    salt: fixed,
                    hash: digest(scheme, password, &fixed),
                }
            }
        };
        PasswordHash { scheme, stored }
    }

    /// Parses the part of a password file line after the `:`.
    pub fn parse(text: &str) -> Result<PasswordHash, HashError> {
        let fields: Vec<&str> = text.split('$').collect();
        let (scheme, salt, hash) = match fields.as_slice() {
            ["", "7", iterations, salt, hash] => {
                let iterations = parse_iterations(iterations)?;
                (HashScheme::Pbkdf2Sha512 { iterations }, *salt, *hash)
            }
            ["", "6", salt, hash] => (HashScheme::Sha512, *salt, *hash),
            ["", SCRAM_TAG, iterations, salt, stored_key, server_key] => {
                return parse_scram(iterations, salt, stored_key, server_key);
            }
            ["", "6" | "7" | SCRAM_TAG, ..] => return Err(HashError::Malformed),
            _ => return Err(HashError::UnknownType),
        };
        Ok(PasswordHash {
            scheme,
            stored: Stored::Mosquitto {
                salt: decode_fixed(salt).ok_or(HashError::BadSalt)?,
                hash: decode_fixed(hash).ok_or(HashError::BadHash)?,
            },
        })
    }

    /// The SCRAM-SHA-256 verifier, for an entry that has one.
    pub fn scram(&self) -> Option<&ScramCredential> {
        match &self.stored {
            Stored::Scram(c) => Some(c),
            Stored::Mosquitto { .. } => None,
        }
    }

    /// The construction this hash uses.
    pub fn scheme(&self) -> HashScheme {
        self.scheme
    }

    /// Whether `password` hashes to this hash, compared in constant time.
    ///
    /// Only the bytes before the first NUL are hashed, here and when hashing a new password:
    /// Mosquitto hashes passwords as C strings (`strlen` in `pw__hash`), so a client that sends
    /// a NUL-terminated password, or anything after a NUL, is treated exactly as Mosquitto treats
    /// it.
    ///
    /// A SCRAM entry checks the password whole: SCRAM clients hash all of its bytes.
    pub fn verify(&self, password: &[u8]) -> bool {
        match &self.stored {
            Stored::Mosquitto { salt, hash } => {
                let candidate = digest(self.scheme, password, salt);
                candidate.ct_eq(hash).into()
            }
            Stored::Scram(credential) => credential.verify_password(password),
        }
    }
}

/// The scheme field of SCRAM entries.
const SCRAM_TAG: &str = "scram-sha-256";

fn parse_scram(
    iterations: &str,
    salt: &str,
    stored_key: &str,
    server_key: &str,
) -> Result<PasswordHash, HashError> {
    let iterations = parse_iterations(iterations)?;
    let salt = STANDARD_PAD_INDIFFERENT
        .decode(salt)
        .ok()
        .filter(|s| !s.is_empty() && s.len() <= MAX_SCRAM_SALT_LEN)
        .ok_or(HashError::BadScramSalt)?;
    let stored_key = decode_fixed(stored_key).ok_or(HashError::BadScramKey)?;
    let server_key = decode_fixed(server_key).ok_or(HashError::BadScramKey)?;
    let credential = ScramCredential::from_parts(&salt, iterations, stored_key, server_key)
        .map_err(|_| HashError::BadScramSalt)?;
    Ok(PasswordHash {
        scheme: HashScheme::ScramSha256 { iterations },
        stored: Stored::Scram(credential),
    })
}

impl fmt::Display for PasswordHash {
    /// The exact text mosquitto_passwd writes: `$7$101$salt$hash` or `$6$salt$hash`; and
    /// `$scram-sha-256$4096$salt$storedkey$serverkey` for SCRAM entries.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (salt, hash) = match &self.stored {
            Stored::Mosquitto { salt, hash } => (STANDARD.encode(salt), STANDARD.encode(hash)),
            Stored::Scram(c) => {
                return write!(
                    f,
                    "${SCRAM_TAG}${}${}${}${}",
                    c.iterations(),
                    STANDARD.encode(c.salt()),
                    STANDARD.encode(c.stored_key()),
                    STANDARD.encode(c.server_key())
                );
            }
        };
        match self.scheme {
            HashScheme::Pbkdf2Sha512 { iterations } => write!(f, "$7${iterations}${salt}${hash}"),
            HashScheme::Sha512 | HashScheme::ScramSha256 { .. } => write!(f, "$6${salt}${hash}"),
        }
    }
}

/// Mosquitto's two hash constructions (`pw__hash` in `src/password_mosq.c`).
fn digest(scheme: HashScheme, password: &[u8], salt: &[u8; SALT_LEN]) -> [u8; HASH_LEN] {
    let password = as_c_string(password);
    let mut out = [0u8; HASH_LEN];
    match scheme {
        HashScheme::Sha512 => {
            let sum = Sha512::new()
                .chain_update(password)
                .chain_update(salt)
                .finalize();
            out.copy_from_slice(&sum);
        }
        HashScheme::Pbkdf2Sha512 { iterations } => {
            pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
        }
        // SCRAM entries are never digested this way; see `Stored::Scram`.
        HashScheme::ScramSha256 { .. } => {}
    }
    out
}

/// The bytes a C string holding `bytes` would have: those before the first NUL.
fn as_c_string(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    &bytes[..end]
}

fn parse_iterations(text: &str) -> Result<u32, HashError> {
    // Mosquitto uses atoi() and needs at least 1; midge wants plain digits so that a typo is
    // reported instead of being read as a different count.
    match text.parse::<u32>() {
        Ok(n) if n >= 1 && text.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(HashError::BadIterations),
    }
}

/// Decodes base64 into exactly `N` bytes. Padding is optional: mosquitto_passwd always pads,
/// but OpenSSL, which Mosquitto decodes with, also reads unpadded text that other tools write.
fn decode_fixed<const N: usize>(text: &str) -> Option<[u8; N]> {
    let bytes = STANDARD_PAD_INDIFFERENT.decode(text).ok()?;
    bytes.try_into().ok()
}

/// Why a hash field could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashError {
    /// Not `$6$...` or `$7$...`. Deliberately does not echo the text, which may be a
    /// plain-text password.
    UnknownType,
    /// `$6$` or `$7$` with the wrong number of `$`-separated fields.
    Malformed,
    /// The `$7$` iteration count is not a whole number of at least 1.
    BadIterations,
    /// The salt is not base64 for exactly 12 bytes.
    BadSalt,
    /// The hash is not base64 for exactly 64 bytes.
    BadHash,
    /// The salt of a SCRAM entry is not base64 for 1 to 1024 bytes.
    BadScramSalt,
    /// A StoredKey or ServerKey is not base64 for exactly 32 bytes.
    BadScramKey,
}

impl fmt::Display for HashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HashError::UnknownType => {
                "not a $6$, $7$ or $scram-sha-256$ password hash (a plain-text password? `midge passwd -U FILE` hashes them)"
            }
            HashError::Malformed => "malformed password hash: wrong number of '$' fields",
            HashError::BadIterations => "bad iteration count in password hash",
            HashError::BadSalt => "salt is not base64 for 12 bytes",
            HashError::BadHash => "hash is not base64 for 64 bytes",
            HashError::BadScramSalt => "SCRAM salt is not base64 for 1 to 1024 bytes",
            HashError::BadScramKey => "SCRAM key is not base64 for 32 bytes",
        })
    }
}

/// What is wrong with one line of a password file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineError {
    /// Not blank, not a comment, and no `:` between username and hash.
    MissingColon,
    /// Nothing (or only blanks) before the `:`.
    EmptyUsername,
    /// Nothing after the `:`.
    EmptyHash,
    /// The hash could not be used.
    Hash(HashError),
    /// The same username already appeared on an earlier line.
    DuplicateUser { first_line: usize },
    /// The line is not valid UTF-8 (MQTT usernames always are).
    InvalidUtf8,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineError::MissingColon => f.write_str("expected `username:hash`"),
            LineError::EmptyUsername => f.write_str("empty username"),
            LineError::EmptyHash => f.write_str("missing password hash"),
            LineError::Hash(e) => e.fmt(f),
            LineError::DuplicateUser { first_line } => {
                write!(f, "user already defined on line {first_line}")
            }
            LineError::InvalidUtf8 => f.write_str("line is not valid UTF-8"),
        }
    }
}

/// Errors from loading, parsing, changing or saving a password file.
#[derive(Debug)]
pub enum PasswdError {
    /// Reading or writing the file failed.
    Io { path: PathBuf, source: io::Error },
    /// A line of the file is not usable; `line` counts from 1.
    Parse {
        origin: String,
        line: usize,
        error: LineError,
    },
    /// A username mosquitto_passwd would refuse.
    InvalidUsername(&'static str),
}

impl fmt::Display for PasswdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswdError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            PasswdError::Parse {
                origin,
                line,
                error,
            } => write!(f, "{origin}:{line}: {error}"),
            PasswdError::InvalidUsername(why) => write!(f, "invalid username: {why}"),
        }
    }
}

impl std::error::Error for PasswdError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PasswdError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A `username:secret` line as written, before the secret is interpreted.
#[derive(Debug, Clone)]
struct RawEntry {
    username: String,
    secret: String,
}

/// One line of a password file, kept so that rewriting the file leaves other lines as they were.
#[derive(Debug, Clone)]
enum Line {
    /// A comment or blank line, written back verbatim.
    Other(String),
    /// A user. `text` is the line as it will be written.
    Entry {
        username: String,
        hash: PasswordHash,
        text: String,
    },
}

/// A parsed password file: users with their hashes, plus the comments and blank lines around them
/// in their original order.
#[derive(Debug, Clone, Default)]
pub struct PasswordFile {
    lines: Vec<Line>,
    /// Username to index in `lines`.
    index: HashMap<String, usize>,
}

impl PasswordFile {
    /// An empty file.
    pub fn new() -> PasswordFile {
        PasswordFile::default()
    }

    /// Reads and parses the file at `path`; errors name the file and line.
    pub fn load(path: impl AsRef<Path>) -> Result<PasswordFile, PasswdError> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        let text = read_text(path).map_err(|e| match e {
            ReadError::Io(source) => PasswdError::Io {
                path: path.to_path_buf(),
                source,
            },
            ReadError::InvalidUtf8 { line } => PasswdError::Parse {
                origin: origin.clone(),
                line,
                error: LineError::InvalidUtf8,
            },
        })?;
        PasswordFile::parse(&text, &origin)
    }

    /// Parses password file text; `origin` names it in errors (usually the path).
    pub fn parse(text: &str, origin: &str) -> Result<PasswordFile, PasswdError> {
        let mut file = PasswordFile::new();
        for (number, raw) in numbered_lines(text) {
            let error = |error| PasswdError::Parse {
                origin: origin.to_string(),
                line: number,
                error,
            };
            let Some(entry) = split_entry(raw).map_err(error)? else {
                file.lines.push(Line::Other(raw.to_string()));
                continue;
            };
            let hash = PasswordHash::parse(&entry.secret).map_err(|e| error(LineError::Hash(e)))?;
            if let Some(&earlier) = file.index.get(&entry.username) {
                // Every source line became one element of `lines`, so indexes are line numbers.
                let first_line = earlier + 1;
                return Err(error(LineError::DuplicateUser { first_line }));
            }
            file.push_entry(entry.username, hash, raw.to_string());
        }
        Ok(file)
    }

    fn push_entry(&mut self, username: String, hash: PasswordHash, text: String) {
        self.index.insert(username.clone(), self.lines.len());
        self.lines.push(Line::Entry {
            username,
            hash,
            text,
        });
    }

    /// Whether `password` is the password of `username`. An unknown user gets `false` after
    /// hashing with the default scheme, the same work as for users created with default settings,
    /// so response times do not tell which usernames exist. The hash comparison is constant-time.
    ///
    /// Like Mosquitto, which hashes the password as a C string, only the bytes before the first
    /// NUL count (see [`PasswordHash::verify`]).
    pub fn verify(&self, username: &str, password: &[u8]) -> bool {
        match self.hash_of(username) {
            Some(hash) => hash.verify(password),
            None => {
                std::hint::black_box(dummy_hash().verify(password));
                false
            }
        }
    }

    /// The stored hash of `username`.
    pub fn hash_of(&self, username: &str) -> Option<&PasswordHash> {
        match &self.lines[*self.index.get(username)?] {
            Line::Entry { hash, .. } => Some(hash),
            Line::Other(_) => None,
        }
    }

    /// What `username` has for SCRAM-SHA-256.
    pub fn scram_lookup(&self, username: &str) -> ScramLookup<'_> {
        match self.hash_of(username) {
            Some(hash) => match hash.scram() {
                Some(credential) => ScramLookup::Credential(credential),
                None => ScramLookup::NotScram,
            },
            None => ScramLookup::Unknown,
        }
    }

    /// Users whose entries are Mosquitto hashes, which cannot do SCRAM.
    pub fn mosquitto_entries(&self) -> usize {
        self.lines
            .iter()
            .filter(|l| matches!(l, Line::Entry { hash, .. } if hash.scram().is_none()))
            .count()
    }

    /// Whether `username` has an entry.
    pub fn contains(&self, username: &str) -> bool {
        self.index.contains_key(username)
    }

    /// Usernames in file order.
    pub fn usernames(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().filter_map(|line| match line {
            Line::Entry { username, .. } => Some(username.as_str()),
            Line::Other(_) => None,
        })
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when the file has no users.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Sets `username`'s password, hashed as mosquitto_passwd does by default. An existing user
    /// keeps its place in the file; a new one is appended, as mosquitto_passwd does.
    pub fn set(&mut self, username: &str, password: &[u8]) -> Result<(), PasswdError> {
        self.set_hash(username, PasswordHash::new(password, HashScheme::default()))
    }

    /// Sets `username`'s stored hash directly.
    pub fn set_hash(&mut self, username: &str, hash: PasswordHash) -> Result<(), PasswdError> {
        check_username(username).map_err(PasswdError::InvalidUsername)?;
        let text = format!("{username}:{hash}");
        match self.index.get(username) {
            Some(&i) => {
                self.lines[i] = Line::Entry {
                    username: username.to_string(),
                    hash,
                    text,
                }
            }
            None => self.push_entry(username.to_string(), hash, text),
        }
        Ok(())
    }

    /// Removes `username`; returns whether it was there.
    pub fn remove(&mut self, username: &str) -> bool {
        let Some(i) = self.index.remove(username) else {
            return false;
        };
        self.lines.remove(i);
        for slot in self.index.values_mut() {
            if *slot > i {
                *slot -= 1;
            }
        }
        true
    }

    /// Writes the file to `path`, replacing it atomically. A new file gets mode 0600; an existing
    /// one keeps its owner and group and becomes 0600, or 0640 if it was group-readable (the
    /// broker commonly reads it through its group).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), PasswdError> {
        let path = path.as_ref();
        write_private(path, self.to_string().as_bytes()).map_err(|source| PasswdError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

impl fmt::Display for PasswordFile {
    /// The file's text: every line in order, each ending in a newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.lines {
            let text = match line {
                Line::Other(text) | Line::Entry { text, .. } => text,
            };
            writeln!(f, "{text}")?;
        }
        Ok(())
    }
}

/// What a password file has for a user that tries SCRAM-SHA-256.
#[derive(Debug, Clone, Copy)]
pub enum ScramLookup<'a> {
    /// A `$scram-sha-256$` entry.
    Credential(&'a ScramCredential),
    /// A Mosquitto `$6$`/`$7$` entry: passwords only.
    NotScram,
    /// No entry.
    Unknown,
}

/// Hashes `password` the way mosquitto_passwd does by default: `$7$101$SALT$HASH` with a random
/// 12-byte salt.
///
/// # Panics
/// When the operating system cannot supply random bytes.
pub fn hash_password(password: &[u8]) -> String {
    PasswordHash::new(password, HashScheme::default()).to_string()
}

/// A hash of the default kind to spend the same time on for unknown users.
fn dummy_hash() -> &'static PasswordHash {
    static DUMMY: OnceLock<PasswordHash> = OnceLock::new();
    DUMMY.get_or_init(|| PasswordHash::with_salt(b"", HashScheme::default(), [0; SALT_LEN]))
}

/// mosquitto_passwd's username rules (`is_username_valid`): at most 65535 bytes, no control
/// characters, no ':'. midge also refuses an empty name, which could never be written back.
fn check_username(username: &str) -> Result<(), &'static str> {
    if username.is_empty() {
        Err("username must not be empty")
    } else if username.len() > MAX_FIELD_LEN {
        Err("username must be less than 65536 bytes long")
    } else if username.chars().any(char::is_control) {
        Err("username must not contain control characters")
    } else if username.contains(':') {
        Err("username must not contain the ':' character")
    } else {
        Ok(())
    }
}

/// C's isspace() in the "C" locale, which Mosquitto's trimming uses; Rust's
/// `is_ascii_whitespace` leaves out vertical tab.
fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// Lines numbered from 1, without their line ending. A final newline does not start a line.
fn numbered_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let text = text.strip_suffix('\n').unwrap_or(text);
    let lines = (!text.is_empty()).then(|| text.split('\n'));
    lines
        .into_iter()
        .flatten()
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .enumerate()
        .map(|(i, line)| (i + 1, line))
}

/// Splits a line into username and secret the way Mosquitto's broker reads it
/// (`pwfile__parse`): `#` in the first column is a comment; both fields are trimmed of blanks;
/// the secret ends at the next ':' and anything after that is ignored, as Mosquitto does.
/// `Ok(None)` for comments and blank lines.
fn split_entry(line: &str) -> Result<Option<RawEntry>, LineError> {
    if line.starts_with('#') || line.trim_matches(is_c_space).is_empty() {
        return Ok(None);
    }
    let (username, rest) = line.split_once(':').ok_or(LineError::MissingColon)?;
    let username = username.trim_matches(is_c_space);
    if username.is_empty() {
        return Err(LineError::EmptyUsername);
    }
    let secret = rest
        .split(':')
        .next()
        .unwrap_or("")
        .trim_matches(is_c_space);
    if secret.is_empty() {
        return Err(LineError::EmptyHash);
    }
    if rest.contains(':') {
        tracing::warn!(
            user = username,
            "password file line has text after the hash; ignored"
        );
    }
    Ok(Some(RawEntry {
        username: username.to_string(),
        secret: secret.to_string(),
    }))
}

/// Why a text file could not be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    Io(io::Error),
    /// A line that matters (not a `#` comment) is not UTF-8; `line` counts from 1.
    InvalidUtf8 {
        line: usize,
    },
}

/// Reads a password or ACL file as text. Comments may hold any bytes (Mosquitto never looks at
/// them), so invalid UTF-8 there is replaced; anywhere else it is an error with a line number.
pub(crate) fn read_text(path: &Path) -> Result<String, ReadError> {
    let bytes = match String::from_utf8(std::fs::read(path).map_err(ReadError::Io)?) {
        Ok(text) => return Ok(text),
        Err(e) => e.into_bytes(),
    };
    let mut text = String::with_capacity(bytes.len());
    for (i, line) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
        match std::str::from_utf8(line) {
            Ok(line) => text.push_str(line),
            Err(_) if line.starts_with(b"#") => text.push_str(&String::from_utf8_lossy(line)),
            Err(_) => return Err(ReadError::InvalidUtf8 { line: i + 1 }),
        }
    }
    Ok(text)
}

/// Replaces `path` with `data` atomically: a private temporary file in the same directory,
/// flushed to disk, then renamed over the target so that readers (the broker reloading) never see
/// half a file. A symlink is followed, so the file it points to is replaced, not the link.
fn write_private(path: &Path, data: &[u8]) -> io::Result<()> {
    let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let previous = std::fs::metadata(&target).ok();
    let dir = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = target
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
    let mut random = [0u8; 6];
    getrandom::fill(&mut random).map_err(io::Error::other)?;
    let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = dir.join(format!(".{}.{suffix}.tmp", name.to_string_lossy()));

    let result = write_new_private(&tmp, data, previous.as_ref())
        .and_then(|()| std::fs::rename(&tmp, &target));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(unix)]
fn write_new_private(
    tmp: &Path,
    data: &[u8],
    previous: Option<&std::fs::Metadata>,
) -> io::Result<()> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)?;
    file.write_all(data)?;
    if let Some(previous) = previous {
        // Keep the owner and group the administrator gave the file; this only succeeds with the
        // privilege to do so, and otherwise the file stays with whoever ran the command.
        let _ = std::os::unix::fs::fchown(&file, Some(previous.uid()), Some(previous.gid()));
        let mode = 0o600 | (previous.mode() & 0o040);
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    file.sync_all()
}

#[cfg(not(unix))]
fn write_new_private(
    tmp: &Path,
    data: &[u8],
    _previous: Option<&std::fs::Metadata>,
) -> io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)?;
    file.write_all(data)?;
    file.sync_all()
}

/// `midge passwd`'s usage, in mosquitto_passwd's words.
const PASSWD_USAGE: &str = "\
midge passwd manages Mosquitto-compatible password files.

Usage: midge passwd [-H HASH] [-I ITERATIONS] [-c | -D] FILE USERNAME
       midge passwd [-H HASH] [-I ITERATIONS] [-c] -b FILE USERNAME PASSWORD
       midge passwd [-H HASH] [-I ITERATIONS] -U FILE
 -b : batch mode: take the password from the command line.
 -c : create a new password file, overwriting any existing one.
 -D : delete the username rather than adding or updating its password.
 -H : hash algorithm; sha512-pbkdf2 (the default, recommended), sha512 (Mosquitto 1.6 and
      earlier) or scram-sha-256 (midge only: a SCRAM-SHA-256 verifier, for MQTT 5 clients
      that authenticate with SCRAM-SHA-256 as well as those that send the password;
      Mosquitto cannot read these entries).
 -I : PBKDF2 iterations (default 101; 4096 for scram-sha-256).
 -U : hash the plain-text passwords of a password file.
Without -b the password is read twice from standard input.";

/// What `midge passwd` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PasswdAction {
    /// Write a new file with one user (`-c`).
    Create { username: String },
    /// Add a user or change its password.
    Update { username: String },
    /// Remove a user (`-D`).
    Delete { username: String },
    /// Hash plain-text passwords (`-U`).
    Upgrade,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PasswdArgs {
    action: PasswdAction,
    file: PathBuf,
    /// The password given with `-b`.
    password: Option<String>,
    scheme: HashScheme,
}

/// Parses `midge passwd` arguments with mosquitto_passwd's rules: options first, then the file,
/// username and (with `-b`) password.
fn parse_passwd_args(args: &[String]) -> Result<PasswdArgs, String> {
    let (mut batch, mut create, mut delete, mut upgrade) = (false, false, false, false);
    let (mut sha512, mut scram) = (false, false);
    let mut iterations = None;
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        match arg.as_str() {
            "-b" => batch = true,
            "-c" => create = true,
            "-D" => delete = true,
            "-U" => upgrade = true,
            "-H" => {
                i += 1;
                (sha512, scram) = match args.get(i).map(String::as_str) {
                    Some("sha512") => (true, false),
                    Some("sha512-pbkdf2") => (false, false),
                    Some("scram-sha-256") => (false, true),
                    Some(other) => return Err(format!("Error: Unknown hash type '{other}'.")),
                    None => return Err("Error: -H argument given but no hash type.".into()),
                };
            }
            "-I" => {
                i += 1;
                iterations = match args.get(i).map(|s| s.parse::<u32>()) {
                    Some(Ok(n)) if n >= 1 => Some(n),
                    Some(_) => return Err("Error: Number of iterations must be > 0.".into()),
                    None => return Err("Error: -I argument given but no iterations.".into()),
                };
            }
            "-h" | "--help" => return Err(PASSWD_USAGE.into()),
            _ => break,
        }
        i += 1;
    }
    for (a, b, names) in [
        (create, delete, "-c and -D"),
        (create, upgrade, "-c and -U"),
        (delete, upgrade, "-D and -U"),
        (delete, batch, "-b and -D"),
    ] {
        if a && b {
            return Err(format!("Error: {names} cannot be used together."));
        }
    }
    let scheme = if sha512 {
        HashScheme::Sha512
    } else if scram {
        HashScheme::ScramSha256 {
            iterations: iterations.unwrap_or(scram::DEFAULT_ITERATIONS),
        }
    } else {
        HashScheme::Pbkdf2Sha512 {
            iterations: iterations.unwrap_or(DEFAULT_ITERATIONS),
        }
    };
    let rest = &args[i..];
    let (action, file, password) = match (rest, batch, create, delete, upgrade) {
        ([file], false, false, false, true) => (PasswdAction::Upgrade, file, None),
        ([file, user], false, _, true, false) => (delete_action(user), file, None),
        ([file, user], false, c, false, false) => (update_action(user, c), file, None),
        ([file, user, pw], true, c, false, false) => (update_action(user, c), file, Some(pw)),
        _ => return Err(PASSWD_USAGE.into()),
    };
    Ok(PasswdArgs {
        action,
        file: PathBuf::from(file),
        password: password.cloned(),
        scheme,
    })
}

fn delete_action(username: &str) -> PasswdAction {
    PasswdAction::Delete {
        username: username.to_string(),
    }
}

fn update_action(username: &str, create: bool) -> PasswdAction {
    let username = username.to_string();
    if create {
        PasswdAction::Create { username }
    } else {
        PasswdAction::Update { username }
    }
}

/// Runs `midge passwd ARGS...` (the arguments after `passwd`), a drop-in for mosquitto_passwd:
///
/// - `midge passwd [-c] FILE USER` reads the password twice from standard input (prompts go to
///   standard error; the terminal still echoes what is typed),
/// - `midge passwd [-c] -b FILE USER PASSWORD` takes it from the command line,
/// - `midge passwd -D FILE USER` deletes a user,
/// - `midge passwd -U FILE` hashes plain-text passwords; unlike mosquitto_passwd, entries that
///   already hold a `$6$`/`$7$` hash are left alone rather than hashed a second time,
/// - `-H sha512|sha512-pbkdf2` and `-I ITERATIONS` choose the hash as mosquitto_passwd does;
///   `-H scram-sha-256` writes SCRAM-SHA-256 entries (4096 iterations unless `-I` says).
///
/// `-c` overwrites the file; otherwise it must exist. Files are written with mode 0600 (see
/// [`PasswordFile::save`]). The error is the message to print.
pub fn run_passwd_command(args: &[String]) -> Result<(), String> {
    let stdin = io::stdin();
    run_passwd_with(args, &mut stdin.lock(), &mut io::stderr())
}

/// [`run_passwd_command`] with the password input and prompt output supplied by the caller.
fn run_passwd_with(
    args: &[String],
    input: &mut dyn BufRead,
    prompt: &mut dyn Write,
) -> Result<(), String> {
    let args = parse_passwd_args(args)?;
    let display = args.file.display().to_string();
    let password = |input: &mut dyn BufRead, prompt: &mut dyn Write| match &args.password {
        Some(pw) => Ok(pw.clone().into_bytes()),
        None => read_password_twice(input, prompt),
    };
    let file = match &args.action {
        PasswdAction::Create { username } => {
            check_username(username).map_err(|e| format!("Error: {e}."))?;
            let password = password(input, prompt)?;
            let mut file = PasswordFile::new();
            set_user(&mut file, username, &password, args.scheme)?;
            file
        }
        PasswdAction::Update { username } => {
            check_username(username).map_err(|e| format!("Error: {e}."))?;
            let mut file = PasswordFile::load(&args.file).map_err(|e| format!("Error: {e}."))?;
            let password = password(input, prompt)?;
            set_user(&mut file, username, &password, args.scheme)?;
            file
        }
        PasswdAction::Delete { username } => {
            let mut file = PasswordFile::load(&args.file).map_err(|e| format!("Error: {e}."))?;
            if !file.remove(username) {
                return Err(format!(
                    "Warning: User {username} not found in password file."
                ));
            }
            file
        }
        PasswdAction::Upgrade => upgrade_file(&args.file, args.scheme)?,
    };
    file.save(&args.file)
        .map_err(|e| format!("Error: unable to write password file {display}: {e}."))
}

fn set_user(
    file: &mut PasswordFile,
    username: &str,
    password: &[u8],
    scheme: HashScheme,
) -> Result<(), String> {
    if password.len() > MAX_FIELD_LEN {
        return Err("Error: Password must be less than 65536 characters long.".into());
    }
    file.set_hash(username, PasswordHash::new(password, scheme))
        .map_err(|e| format!("Error: {e}."))
}

/// Reads a password file whose entries may hold plain-text passwords and hashes those. A secret
/// that starts like a hash but does not parse is an error rather than a password, so a damaged
/// hash is never turned into a password equal to its own text.
fn upgrade_file(path: &Path, scheme: HashScheme) -> Result<PasswordFile, String> {
    let origin = path.display().to_string();
    let text = read_text(path).map_err(|e| match e {
        ReadError::Io(e) => format!("Error: Unable to open password file {origin}: {e}."),
        ReadError::InvalidUtf8 { line } => format!("Error: {origin}:{line}: not valid UTF-8."),
    })?;
    let mut file = PasswordFile::new();
    for (number, raw) in numbered_lines(&text) {
        let at = |e: &dyn fmt::Display| format!("Error: {origin}:{number}: {e}.");
        let Some(entry) = split_entry(raw).map_err(|e| at(&e))? else {
            file.lines.push(Line::Other(raw.to_string()));
            continue;
        };
        if file.contains(&entry.username) {
            return Err(at(&"user defined twice"));
        }
        let looks_hashed = ["$6$", "$7$", "$scram-sha-256$"]
            .iter()
            .any(|prefix| entry.secret.starts_with(prefix));
        let hash = if looks_hashed {
            PasswordHash::parse(&entry.secret).map_err(|e| at(&e))?
        } else {
            PasswordHash::new(entry.secret.as_bytes(), scheme)
        };
        let text = format!("{}:{hash}", entry.username);
        file.push_entry(entry.username, hash, text);
    }
    Ok(file)
}

/// Prompts for the password and its confirmation, as mosquitto_passwd does.
fn read_password_twice(input: &mut dyn BufRead, prompt: &mut dyn Write) -> Result<Vec<u8>, String> {
    let first = read_password(input, prompt, "Password: ")?;
    let second = read_password(input, prompt, "Reenter password: ")?;
    if first != second {
        return Err("Error: Passwords do not match.".into());
    }
    Ok(first)
}

fn read_password(
    input: &mut dyn BufRead,
    prompt: &mut dyn Write,
    text: &str,
) -> Result<Vec<u8>, String> {
    let _ = write!(prompt, "{text}");
    let _ = prompt.flush();
    let mut line = Vec::new();
    input
        .read_until(b'\n', &mut line)
        .map_err(|e| format!("Error: reading password: {e}."))?;
    let _ = writeln!(prompt);
    // Like mosquitto_passwd: the line ending is not part of the password, and an empty password
    // (or end of input) is refused.
    while line.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
        line.pop();
    }
    if line.is_empty() {
        return Err("Error: Empty password.".into());
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fixed 12-byte salt of the known-answer vectors, "midge-salt12".
    const SALT: [u8; SALT_LEN] = *b"midge-salt12";

    // Expected strings computed independently with Python's hashlib:
    //   base64(hashlib.pbkdf2_hmac('sha512', b'hunter2', b'midge-salt12', N, 64))
    //   base64(hashlib.sha512(b'hunter2' + b'midge-salt12').digest())
    const PBKDF2_101: &str = "$7$101$bWlkZ2Utc2FsdDEy$xQHrnKpJCPXeRMDecxfs/dDeaOtvkGrfcvacJrIlJO+SghwZb/QjO9Y8afxnhwJ4S6ZkKdMbihv64wr6WYiKjA==";
    const PBKDF2_1: &str = "$7$1$bWlkZ2Utc2FsdDEy$hOuMqsHQM3VsEzpBEfMRQHPvdtHITw+T6kS3PFdarLM3UbTgdN99zPwZog2tCeh5fNzXrM27viDePbCRWgzc9A==";
    const SHA512: &str = "$6$bWlkZ2Utc2FsdDEy$A4cxOrfT3feJI5IE9sshW1ZvX7hDIme+jA2XWA87nzpK+Q5YiC0o0CkTGnownuIEgQPmuX3rSk/AK/LzWEviIw==";
    // Salt 00 01 .. 0b, password "pässwörd" as UTF-8 (PBKDF2) and the empty password (SHA-512).
    const PBKDF2_UTF8: &str = "$7$101$AAECAwQFBgcICQoL$fNBagqD3WZkCJYLWksl/iQJEMNt+IihjBC7YcwJTpttL2ZHVz5T80mW20W1hT68g83igvRn7ogaFc2KTh6+uJg==";
    const SHA512_EMPTY: &str = "$6$AAECAwQFBgcICQoL$ulGyqdovJv6B/D7hFSQlWTfsa+xIg160N8WYxVZ04VqlD4iSLedYQzKl5NJHhwkMsU38Or2znFWu327hCPlTVA==";

    /// Written by Mosquitto 2.0.11's mosquitto_passwd; the passwords are in the file's comments.
    const MOSQUITTO_FIXTURE: &str =
        include_str!("../tests/fixtures/passwd_acl/mosquitto-2.0.11.passwd");

    fn counting_salt() -> [u8; SALT_LEN] {
        std::array::from_fn(|i| i as u8)
    }

    fn parse_err(text: &str) -> (usize, LineError) {
        match PasswordFile::parse(text, "test.pw") {
            Err(PasswdError::Parse { line, error, .. }) => (line, error),
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn pbkdf2_known_answers() {
        let h101 = PasswordHash::with_salt(b"hunter2", HashScheme::default(), SALT);
        assert_eq!(h101.to_string(), PBKDF2_101);
        let h1 =
            PasswordHash::with_salt(b"hunter2", HashScheme::Pbkdf2Sha512 { iterations: 1 }, SALT);
        assert_eq!(h1.to_string(), PBKDF2_1);
        let utf8 = PasswordHash::with_salt(
            "pässwörd".as_bytes(),
            HashScheme::default(),
            counting_salt(),
        );
        assert_eq!(utf8.to_string(), PBKDF2_UTF8);
    }

    #[test]
    fn sha512_known_answers() {
        let h = PasswordHash::with_salt(b"hunter2", HashScheme::Sha512, SALT);
        assert_eq!(h.to_string(), SHA512);
        let empty = PasswordHash::with_salt(b"", HashScheme::Sha512, counting_salt());
        assert_eq!(empty.to_string(), SHA512_EMPTY);
    }

    #[test]
    fn parsed_vectors_verify_and_print_back_unchanged() {
        for (text, password) in [
            (PBKDF2_101, "hunter2"),
            (PBKDF2_1, "hunter2"),
            (SHA512, "hunter2"),
            (PBKDF2_UTF8, "pässwörd"),
            (SHA512_EMPTY, ""),
        ] {
            let hash = PasswordHash::parse(text).unwrap();
            assert!(hash.verify(password.as_bytes()), "{text}");
            assert!(!hash.verify(b"hunter3"), "{text}");
            assert_eq!(hash.to_string(), text);
        }
        let hash = PasswordHash::parse(PBKDF2_1).unwrap();
        assert_eq!(hash.scheme(), HashScheme::Pbkdf2Sha512 { iterations: 1 });
    }

    #[test]
    fn hash_password_round_trips_with_random_salt() {
        let a = hash_password(b"secret");
        let b = hash_password(b"secret");
        assert!(a.starts_with("$7$101$"), "{a}");
        assert_ne!(a, b, "salts must differ");
        let parsed = PasswordHash::parse(&a).unwrap();
        assert!(parsed.verify(b"secret"));
        assert!(!parsed.verify(b"Secret"));
        assert!(!parsed.verify(b""));
    }

    #[test]
    fn verify_by_user() {
        let text = format!("# users\n\nalice:{PBKDF2_101}\nbob:{SHA512_EMPTY}\n");
        let file = PasswordFile::parse(&text, "test.pw").unwrap();
        assert_eq!(file.len(), 2);
        assert!(file.verify("alice", b"hunter2"));
        assert!(!file.verify("alice", b"hunter"));
        assert!(
            file.verify("alice", b"hunter2\0x"),
            "NUL ends the password, as in Mosquitto"
        );
        assert!(!file.verify("alice", b"hunter\0"));
        assert!(file.verify("bob", b""));
        assert!(
            file.verify("bob", b"\0x"),
            "NUL ends the password for $6$ too"
        );
        assert!(!file.verify("carol", b"hunter2"), "unknown user");
        assert!(
            !file.verify("Alice", b"hunter2"),
            "usernames are case sensitive"
        );
    }

    #[test]
    fn mosquitto_written_file_verifies() {
        let file = PasswordFile::parse(MOSQUITTO_FIXTURE, "fixture").unwrap();
        assert!(file.verify("alice", b"correct horse"));
        assert!(file.verify("bob", b"s3cret:with:colons"));
        assert!(file.verify("carol", b"legacy"));
        assert!(file.verify("dave", b"iter1000"));
        assert!(!file.verify("alice", b"legacy"));
        assert_eq!(file.hash_of("carol").unwrap().scheme(), HashScheme::Sha512);
        assert_eq!(
            file.hash_of("dave").unwrap().scheme(),
            HashScheme::Pbkdf2Sha512 { iterations: 1000 }
        );
    }

    #[test]
    fn blanks_around_fields_and_crlf_are_trimmed_like_mosquitto() {
        let text = format!("  alice :\t{PBKDF2_101}  \r\n\r\n");
        let file = PasswordFile::parse(&text, "test.pw").unwrap();
        assert!(file.verify("alice", b"hunter2"));
    }

    #[test]
    fn text_after_a_second_colon_is_ignored_like_mosquitto() {
        let file = PasswordFile::parse(&format!("alice:{SHA512}:x"), "t").unwrap();
        assert!(file.verify("alice", b"hunter2"));
    }

    #[test]
    fn unpadded_base64_is_accepted() {
        let unpadded = SHA512.trim_end_matches('=');
        let file = PasswordFile::parse(&format!("alice:{unpadded}"), "t").unwrap();
        assert!(file.verify("alice", b"hunter2"));
    }

    #[test]
    fn parse_errors_name_the_line() {
        let ok = format!("alice:{PBKDF2_101}\n");
        assert_eq!(
            parse_err(&format!("{ok}# c\nbob\n")),
            (3, LineError::MissingColon)
        );
        assert_eq!(parse_err(" :x"), (1, LineError::EmptyUsername));
        assert_eq!(parse_err("bob:"), (1, LineError::EmptyHash));
        assert_eq!(parse_err("bob:  "), (1, LineError::EmptyHash));
        let unknown = LineError::Hash(HashError::UnknownType);
        assert_eq!(
            parse_err(&format!("{ok}bob:plaintext")),
            (2, unknown.clone())
        );
        assert_eq!(parse_err("bob:$5$abc$def"), (1, unknown));
        let malformed = LineError::Hash(HashError::Malformed);
        assert_eq!(parse_err("bob:$7$101$abc"), (1, malformed.clone()));
        assert_eq!(parse_err(&format!("bob:{SHA512}$x")), (1, malformed));
        for bad_iterations in ["0", "-1", "x", "+5", ""] {
            let text = format!("bob:$7${bad_iterations}$bWlkZ2Utc2FsdDEy$AAAA");
            let error = LineError::Hash(HashError::BadIterations);
            assert_eq!(parse_err(&text), (1, error), "{bad_iterations}");
        }
        let bad_salt = LineError::Hash(HashError::BadSalt);
        let salt_11 = STANDARD.encode([0u8; 11]);
        let hash_64 = STANDARD.encode([0u8; 64]);
        assert_eq!(
            parse_err(&format!("bob:$6${salt_11}${hash_64}")),
            (1, bad_salt.clone())
        );
        assert_eq!(parse_err(&format!("bob:$6$!!!!${hash_64}")), (1, bad_salt));
        let bad_hash = LineError::Hash(HashError::BadHash);
        let salt_12 = STANDARD.encode(SALT);
        let hash_63 = STANDARD.encode([0u8; 63]);
        assert_eq!(
            parse_err(&format!("bob:$7$101${salt_12}${hash_63}")),
            (1, bad_hash)
        );
        assert_eq!(
            parse_err(&format!("{ok}\nalice:{SHA512}")),
            (3, LineError::DuplicateUser { first_line: 1 })
        );
    }

    #[test]
    fn parse_error_message_names_file_and_line_but_not_the_secret() {
        let err = PasswordFile::parse("# x\nbob:my-plain-password\n", "/etc/midge/passwd")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("/etc/midge/passwd:2: "), "{err}");
        assert!(!err.contains("my-plain-password"), "{err}");
    }

    #[test]
    fn set_remove_and_write_back_preserve_other_lines() {
        let text =
            format!("# header\nalice:{PBKDF2_101}\n\n# bob\nbob:{SHA512}\ncarol:{PBKDF2_1}\n");
        let mut file = PasswordFile::parse(&text, "t").unwrap();
        assert_eq!(
            file.to_string(),
            text,
            "unchanged file writes back identically"
        );

        file.set("bob", b"new").unwrap();
        file.set("dave", b"dave-pw").unwrap();
        assert!(file.remove("alice"));
        assert!(!file.remove("alice"));
        assert_eq!(
            file.usernames().collect::<Vec<_>>(),
            ["bob", "carol", "dave"]
        );

        let written = file.to_string();
        let lines: Vec<&str> = written.lines().collect();
        assert_eq!(lines[0], "# header");
        assert_eq!(lines[1], "");
        assert_eq!(lines[2], "# bob");
        assert!(lines[3].starts_with("bob:$7$101$"), "{}", lines[3]);
        assert_eq!(lines[4], format!("carol:{PBKDF2_1}"));
        assert!(lines[5].starts_with("dave:$7$101$"));
        let reread = PasswordFile::parse(&written, "t").unwrap();
        assert!(reread.verify("bob", b"new"));
        assert!(!reread.verify("bob", b"hunter2"));
        assert!(reread.verify("carol", b"hunter2"));
        assert!(reread.verify("dave", b"dave-pw"));
        assert!(!reread.contains("alice"));
    }

    #[test]
    fn set_refuses_usernames_mosquitto_passwd_refuses() {
        let mut file = PasswordFile::new();
        for bad in ["", "a:b", "tab\there", "nl\n"] {
            assert!(
                matches!(file.set(bad, b"x"), Err(PasswdError::InvalidUsername(_))),
                "{bad:?}"
            );
        }
        assert!(file.is_empty());
        file.set("ok user é", b"x").unwrap();
        assert!(file.verify("ok user é", b"x"));
    }

    #[cfg(unix)]
    #[test]
    fn save_writes_mode_0600_and_load_reads_it_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        let mut file = PasswordFile::new();
        file.set("alice", b"pw").unwrap();
        file.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        // A world-readable file loses that on rewrite; group read is kept.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        file.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);

        let loaded = PasswordFile::load(&path).unwrap();
        assert!(loaded.verify("alice", b"pw"));
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary files left behind");
    }

    #[test]
    fn load_reports_missing_file_and_bad_utf8_with_line() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        assert!(matches!(
            PasswordFile::load(&missing),
            Err(PasswdError::Io { .. })
        ));
        let path = dir.path().join("latin1");
        let mut bytes = b"# caf\xe9 comment is fine\n".to_vec();
        bytes.extend_from_slice(format!("alice:{SHA512}\n").as_bytes());
        std::fs::write(&path, &bytes).unwrap();
        assert!(
            PasswordFile::load(&path)
                .unwrap()
                .verify("alice", b"hunter2")
        );
        bytes.extend_from_slice(b"caf\xe9:x\n");
        std::fs::write(&path, &bytes).unwrap();
        match PasswordFile::load(&path) {
            Err(PasswdError::Parse { line: 3, error, .. }) => {
                assert_eq!(error, LineError::InvalidUtf8)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn passwd_args_follow_mosquitto_passwd() {
        let parse = |a: &[&str]| parse_passwd_args(&strings(a));
        let got = parse(&["-c", "-b", "f", "u", "p"]).unwrap();
        assert_eq!(
            got.action,
            PasswdAction::Create {
                username: "u".into()
            }
        );
        assert_eq!(got.password.as_deref(), Some("p"));
        assert_eq!(got.scheme, HashScheme::default());
        let got = parse(&["-H", "sha512", "f", "u"]).unwrap();
        assert_eq!(got.scheme, HashScheme::Sha512);
        assert_eq!(got.password, None);
        let got = parse(&["-I", "500", "-b", "f", "u", "p"]).unwrap();
        assert_eq!(got.scheme, HashScheme::Pbkdf2Sha512 { iterations: 500 });
        assert_eq!(parse(&["-U", "f"]).unwrap().action, PasswdAction::Upgrade);
        assert_eq!(
            parse(&["-D", "f", "u"]).unwrap().action,
            PasswdAction::Delete {
                username: "u".into()
            }
        );
        for bad in [
            &["-c", "-D", "f", "u"][..],
            &["-D", "-b", "f", "u"],
            &["-c", "-U", "f"],
            &["f"],
            &["-b", "f", "u"],
            &["f", "u", "p"],
            &["-U", "f", "u"],
            &["-I", "0", "f", "u"],
            &["-H", "md5", "f", "u"],
            &[],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn passwd_command_create_update_delete() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        let f = path.to_str().unwrap();
        let run = |args: &[&str], stdin: &str| {
            let mut prompts = Vec::new();
            let result = run_passwd_with(&strings(args), &mut stdin.as_bytes(), &mut prompts);
            (result, String::from_utf8(prompts).unwrap())
        };

        let (result, prompts) = run(&["-c", f, "alice"], "one\none\n");
        result.unwrap();
        assert_eq!(prompts, "Password: \nReenter password: \n");
        run(&["-b", f, "bob", "two"], "").0.unwrap();
        run(&[f, "carol"], "three\r\nthree\r\n").0.unwrap();
        run(&["-H", "sha512", "-b", f, "dave", "four"], "")
            .0
            .unwrap();
        let file = PasswordFile::load(&path).unwrap();
        assert!(file.verify("alice", b"one"));
        assert!(file.verify("bob", b"two"));
        assert!(file.verify("carol", b"three"));
        assert!(file.verify("dave", b"four"));
        assert_eq!(file.hash_of("dave").unwrap().scheme(), HashScheme::Sha512);

        let (err, _) = run(&[f, "alice"], "x\ny\n");
        assert_eq!(err.unwrap_err(), "Error: Passwords do not match.");
        let (err, _) = run(&[f, "alice"], "\n\n");
        assert_eq!(err.unwrap_err(), "Error: Empty password.");
        let (err, _) = run(&[f, "alice"], "");
        assert_eq!(err.unwrap_err(), "Error: Empty password.");
        assert!(run(&["-b", f, "a:b", "x"], "").0.is_err());

        run(&["-D", f, "bob"], "").0.unwrap();
        let (err, _) = run(&["-D", f, "bob"], "");
        assert!(err.unwrap_err().contains("not found"));
        let file = PasswordFile::load(&path).unwrap();
        assert_eq!(
            file.usernames().collect::<Vec<_>>(),
            ["alice", "carol", "dave"]
        );
        assert!(
            file.verify("alice", b"one"),
            "untouched users keep their hash"
        );

        // Without -c the file must exist; -c replaces whatever was there.
        let other = dir.path().join("other");
        assert!(
            run(&["-b", other.to_str().unwrap(), "u", "p"], "")
                .0
                .is_err()
        );
        run(&["-c", "-b", f, "erin", "five"], "").0.unwrap();
        let file = PasswordFile::load(&path).unwrap();
        assert_eq!(file.usernames().collect::<Vec<_>>(), ["erin"]);
    }

    #[test]
    fn passwd_command_upgrades_plain_text_passwords() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        let text = format!("# plain\nalice:open sesame\nbob:{SHA512}\ncarol: spaced \n");
        std::fs::write(&path, text).unwrap();
        run_passwd_with(
            &strings(&["-U", path.to_str().unwrap()]),
            &mut &b""[..],
            &mut Vec::new(),
        )
        .unwrap();
        let written = std::fs::read_to_string(&path).unwrap();
        assert!(written.starts_with("# plain\nalice:$7$101$"), "{written}");
        assert!(written.contains(&format!("bob:{SHA512}\n")), "hashes stay");
        let file = PasswordFile::parse(&written, "t").unwrap();
        assert!(file.verify("alice", b"open sesame"));
        assert!(file.verify("bob", b"hunter2"));
        assert!(
            file.verify("carol", b"spaced"),
            "trimmed as Mosquitto reads it"
        );

        std::fs::write(&path, "alice:$7$broken\n").unwrap();
        let err = run_passwd_with(
            &strings(&["-U", path.to_str().unwrap()]),
            &mut &b""[..],
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(err.contains(":1:"), "{err}");
    }

    /// RFC 7677's credential (password "pencil"), StoredKey and ServerKey computed independently
    /// with Python's hashlib and hmac.
    const SCRAM_PENCIL: &str = "$scram-sha-256$4096$W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=$wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";

    #[test]
    fn scram_entries_parse_verify_and_print_back() {
        let hash = PasswordHash::parse(SCRAM_PENCIL).unwrap();
        assert_eq!(hash.scheme(), HashScheme::ScramSha256 { iterations: 4096 });
        assert_eq!(hash.to_string(), SCRAM_PENCIL);
        // A plain CONNECT password is checked against the same entry.
        assert!(hash.verify(b"pencil"));
        assert!(!hash.verify(b"pencil2"));
        // Not cut at a NUL as Mosquitto's entries are. (A trailing NUL alone would not show it:
        // HMAC pads short keys with zeros.)
        assert!(!hash.verify(b"pencil\0x"), "SCRAM entries hash every byte");
        let credential = hash.scram().unwrap();
        assert_eq!(credential.iterations(), 4096);
        assert!(PasswordHash::parse(PBKDF2_101).unwrap().scram().is_none());

        let made = PasswordHash::new(b"pencil", HashScheme::ScramSha256 { iterations: 64 });
        let text = made.to_string();
        assert!(text.starts_with("$scram-sha-256$64$"), "{text}");
        assert!(!text.contains("pencil"));
        let parsed = PasswordHash::parse(&text).unwrap();
        assert_eq!(parsed, made);
        assert!(parsed.verify(b"pencil"));
        assert_eq!(parsed.scram().unwrap().salt().len(), scram::SALT_LEN);
    }

    #[test]
    fn scram_entry_errors() {
        let key = STANDARD.encode([0u8; 32]);
        let short = STANDARD.encode([0u8; 31]);
        for (text, want) in [
            (
                format!("$scram-sha-256$4096$c2FsdA==${key}"),
                HashError::Malformed,
            ),
            (
                format!("$scram-sha-256$0$c2FsdA==${key}${key}"),
                HashError::BadIterations,
            ),
            (
                format!("$scram-sha-256$x$c2FsdA==${key}${key}"),
                HashError::BadIterations,
            ),
            (
                format!("$scram-sha-256$4096$$${key}${key}"),
                HashError::Malformed,
            ),
            (
                format!("$scram-sha-256$4096$!!${key}${key}"),
                HashError::BadScramSalt,
            ),
            (
                format!("$scram-sha-256$4096$c2FsdA==${short}${key}"),
                HashError::BadScramKey,
            ),
            (
                format!("$scram-sha-256$4096$c2FsdA==${key}$nope"),
                HashError::BadScramKey,
            ),
            ("$scram-sha-1$4096$a$b$c".to_owned(), HashError::UnknownType),
        ] {
            assert_eq!(PasswordHash::parse(&text), Err(want.clone()), "{text}");
        }
        let empty_salt = format!("$scram-sha-256$4096$${key}${key}");
        assert_eq!(
            PasswordHash::parse(&empty_salt),
            Err(HashError::BadScramSalt)
        );
    }

    #[test]
    fn scram_lookup_tells_scram_mosquitto_and_unknown_apart() {
        let text = format!("alice:{SCRAM_PENCIL}\nbob:{PBKDF2_101}\n");
        let file = PasswordFile::parse(&text, "t").unwrap();
        assert!(matches!(
            file.scram_lookup("alice"),
            ScramLookup::Credential(_)
        ));
        assert!(matches!(file.scram_lookup("bob"), ScramLookup::NotScram));
        assert!(matches!(file.scram_lookup("carol"), ScramLookup::Unknown));
        assert_eq!(file.mosquitto_entries(), 1);
        assert!(file.verify("alice", b"pencil"));
        assert!(file.verify("bob", b"hunter2"));
    }

    #[test]
    fn passwd_command_writes_scram_entries() {
        let parse = |a: &[&str]| parse_passwd_args(&strings(a));
        assert_eq!(
            parse(&["-H", "scram-sha-256", "f", "u"]).unwrap().scheme,
            HashScheme::ScramSha256 {
                iterations: scram::DEFAULT_ITERATIONS
            }
        );
        assert_eq!(
            parse(&["-H", "scram-sha-256", "-I", "10000", "f", "u"])
                .unwrap()
                .scheme,
            HashScheme::ScramSha256 { iterations: 10000 }
        );

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        let f = path.to_str().unwrap();
        let run = |args: &[&str]| run_passwd_with(&strings(args), &mut &b""[..], &mut Vec::new());
        run(&["-c", "-b", f, "alice", "wonderland"]).unwrap();
        run(&["-H", "scram-sha-256", "-I", "16", "-b", f, "bob", "builder"]).unwrap();
        let written = std::fs::read_to_string(&path).unwrap();
        assert!(written.contains("\nbob:$scram-sha-256$16$"), "{written}");
        assert!(!written.contains("builder"));
        let file = PasswordFile::load(&path).unwrap();
        assert!(file.verify("alice", b"wonderland"));
        assert!(file.verify("bob", b"builder"));
        assert!(matches!(
            file.scram_lookup("bob"),
            ScramLookup::Credential(_)
        ));

        // -U with -H scram-sha-256 turns plain passwords into SCRAM entries and keeps hashes.
        std::fs::write(&path, format!("carol:plain\nbob:{SCRAM_PENCIL}\n")).unwrap();
        run(&["-H", "scram-sha-256", "-I", "16", "-U", f]).unwrap();
        let file = PasswordFile::load(&path).unwrap();
        assert!(matches!(
            file.scram_lookup("carol"),
            ScramLookup::Credential(_)
        ));
        assert!(file.verify("carol", b"plain"));
        assert_eq!(file.hash_of("bob").unwrap().to_string(), SCRAM_PENCIL);
    }

    /// Files from the real mosquitto_passwd verify in midge. Skipped when it is not installed
    /// (Debian: `apt-get install mosquitto`).
    #[test]
    fn interop_mosquitto_passwd_files_verify() {
        let tool = Path::new("/usr/bin/mosquitto_passwd");
        if !tool.exists() {
            eprintln!("skipped: {} not installed", tool.display());
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        let p = path.to_str().unwrap();
        let run = |args: &[&str]| {
            let status = std::process::Command::new(tool)
                .args(args)
                .stdout(std::process::Stdio::null())
                .status()
                .unwrap();
            assert!(status.success(), "mosquitto_passwd {args:?}");
        };
        run(&["-c", "-b", p, "alice", "correct horse"]);
        run(&["-b", p, "bob", "pässwörd:x"]);
        run(&["-H", "sha512", "-b", p, "carol", "legacy"]);
        run(&["-I", "7", "-b", p, "dave", "d"]);
        let file = PasswordFile::load(&path).unwrap();
        assert!(file.verify("alice", b"correct horse"));
        assert!(file.verify("bob", "pässwörd:x".as_bytes()));
        assert!(file.verify("carol", b"legacy"));
        assert!(file.verify("dave", b"d"));
        assert!(!file.verify("alice", b"correct horse "));

        // And the other way: a file midge rewrote is still one mosquitto_passwd can update.
        let mut file = file;
        file.set("erin", b"from midge").unwrap();
        file.save(&path).unwrap();
        run(&["-b", p, "frank", "f"]);
        run(&["-D", p, "alice"]);
        let file = PasswordFile::load(&path).unwrap();
        assert!(file.verify("erin", b"from midge"));
        assert!(file.verify("frank", b"f"));
        assert!(!file.contains("alice"));
    }
}
