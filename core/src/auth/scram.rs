//! SCRAM-SHA-256 (RFC 5802 with RFC 7677's hash) as an MQTT 5 enhanced authentication method.
//!
//! The exchange maps onto MQTT as its SASL profile suggests: the client-first message is the
//! Authentication Data of CONNECT (or of the AUTH 0x19 that re-authenticates), the server-first
//! message goes in AUTH 0x18, the client-final message comes back in AUTH 0x18, and the
//! server-final message (`v=` and the server signature) in the successful CONNACK or AUTH 0x00.
//! A failure is a CONNACK or DISCONNECT reason code rather than an `e=` message.
//!
//! The server stores no password, only what RFC 5802 calls the verifier: salt, iteration count,
//! StoredKey and ServerKey ([`ScramCredential`]). Channel binding is not offered (GS2 header
//! `n,,`, or `y,,` from a client that could bind); the SCRAM user name is used as given, without
//! SASLprep, so user names and passwords outside ASCII must be normalised by the client as they
//! were when the credential was made. The hash, HMAC and PBKDF2 come from RustCrypto's `sha2`,
//! `hmac` and `pbkdf2` crates, and the proof is compared in constant time with `subtle`.
//!
//! A user without a credential is not told apart from one with a wrong password: the server
//! answers with a salt derived from the user name and a secret, and fails at the proof.

use super::{AuthExchange, AuthFailure, AuthRequest, AuthStep, Authenticator};
use crate::broker::ListenerId;
use crate::codec::ByteString;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use subtle::ConstantTimeEq;

/// The Authentication Method name.
pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";
/// Iterations of new credentials, RFC 7677's minimum.
pub const DEFAULT_ITERATIONS: u32 = 4096;
/// Salt length of new credentials, in bytes.
pub const SALT_LEN: usize = 16;
/// Length of SHA-256 outputs, and so of keys, signatures and proofs.
pub const KEY_LEN: usize = 32;
/// Random bytes in the server's part of the nonce (32 printable characters once encoded).
const SERVER_NONCE_BYTES: usize = 24;

type HmacSha256 = Hmac<Sha256>;

/// What a server stores for one user (RFC 5802, 3): enough to verify a client's proof, and a
/// plain password, but not to impersonate the user to another server.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredential {
    salt: Vec<u8>,
    iterations: u32,
    stored_key: [u8; KEY_LEN],
    server_key: [u8; KEY_LEN],
}

impl fmt::Debug for ScramCredential {
    // The keys verify a secret: keep them out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramCredential")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// Why a credential cannot be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialError {
    /// The salt is empty.
    EmptySalt,
    /// The iteration count is 0.
    ZeroIterations,
}

impl fmt::Display for CredentialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CredentialError::EmptySalt => "the SCRAM salt is empty",
            CredentialError::ZeroIterations => "the SCRAM iteration count must be at least 1",
        })
    }
}

impl std::error::Error for CredentialError {}

impl ScramCredential {
    /// The credential of `password` with this salt and iteration count.
    pub fn new(
        password: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> Result<ScramCredential, CredentialError> {
        check_parameters(salt, iterations)?;
        let salted = salted_password(password, salt, iterations);
        Ok(ScramCredential {
            salt: salt.to_vec(),
            iterations,
            stored_key: sha256(&client_key(&salted)),
            server_key: hmac(&salted, b"Server Key"),
        })
    }

    /// A credential from its stored parts.
    pub fn from_parts(
        salt: &[u8],
        iterations: u32,
        stored_key: [u8; KEY_LEN],
        server_key: [u8; KEY_LEN],
    ) -> Result<ScramCredential, CredentialError> {
        check_parameters(salt, iterations)?;
        Ok(ScramCredential {
            salt: salt.to_vec(),
            iterations,
            stored_key,
            server_key,
        })
    }

    pub fn salt(&self) -> &[u8] {
        &self.salt
    }

    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    pub fn stored_key(&self) -> &[u8; KEY_LEN] {
        &self.stored_key
    }

    pub fn server_key(&self) -> &[u8; KEY_LEN] {
        &self.server_key
    }

    /// Whether `password` is this credential's password: its StoredKey, derived with the stored
    /// salt and iteration count, is compared in constant time. This lets one stored entry serve
    /// a plain CONNECT password as well as SCRAM.
    pub fn verify_password(&self, password: &[u8]) -> bool {
        let salted = salted_password(password, &self.salt, self.iterations);
        let stored_key = sha256(&client_key(&salted));
        stored_key.ct_eq(&self.stored_key).into()
    }
}

fn check_parameters(salt: &[u8], iterations: u32) -> Result<(), CredentialError> {
    if salt.is_empty() {
        return Err(CredentialError::EmptySalt);
    }
    if iterations == 0 {
        return Err(CredentialError::ZeroIterations);
    }
    Ok(())
}

/// SaltedPassword := Hi(Normalize(password), salt, i), Hi being PBKDF2 with HMAC-SHA-256.
fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> [u8; KEY_LEN] {
    pbkdf2::pbkdf2_hmac_array::<Sha256, KEY_LEN>(password, salt, iterations)
}

/// ClientKey := HMAC(SaltedPassword, "Client Key").
fn client_key(salted: &[u8; KEY_LEN]) -> [u8; KEY_LEN] {
    hmac(salted, b"Client Key")
}

fn hmac(key: &[u8], message: &[u8]) -> [u8; KEY_LEN] {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(message);
    mac.finalize().into_bytes().into()
}

fn sha256(data: &[u8]) -> [u8; KEY_LEN] {
    Sha256::digest(data).into()
}

/// Where the SCRAM authenticator finds credentials.
pub trait ScramCredentials: fmt::Debug + Send {
    /// Whether SCRAM-SHA-256 is offered on `listener`.
    fn offered(&self, listener: ListenerId) -> bool;

    /// The credential of `username` on `listener`, if it has one that can do SCRAM.
    fn lookup(&self, listener: ListenerId, username: &str) -> Option<ScramCredential>;
}

/// Credentials by user name, the same on every listener.
impl ScramCredentials for BTreeMap<String, ScramCredential> {
    fn offered(&self, _: ListenerId) -> bool {
        true
    }

    fn lookup(&self, _: ListenerId, username: &str) -> Option<ScramCredential> {
        self.get(username).cloned()
    }
}

/// The SCRAM-SHA-256 authenticator.
pub struct ScramSha256 {
    credentials: Box<dyn ScramCredentials>,
    /// Server nonces.
    rng: ChaCha20Rng,
    /// Key of the stand-in salts of unknown users, drawn from `rng` once.
    secret: [u8; KEY_LEN],
}

impl fmt::Debug for ScramSha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramSha256")
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl ScramSha256 {
    /// An authenticator over `credentials` whose nonces come from ChaCha20 seeded with `seed`:
    /// from the operating system in production, fixed in tests and simulation.
    pub fn new(credentials: Box<dyn ScramCredentials>, seed: [u8; 32]) -> ScramSha256 {
        let mut rng = ChaCha20Rng::from_seed(seed);
        let mut secret = [0; KEY_LEN];
        rng.fill_bytes(&mut secret);
        ScramSha256 {
            credentials,
            rng,
            secret,
        }
    }

    fn server_nonce(&mut self) -> String {
        let mut bytes = [0; SERVER_NONCE_BYTES];
        self.rng.fill_bytes(&mut bytes);
        STANDARD.encode(bytes)
    }

    /// A credential for a user that has none, the same each time for the same name, so that
    /// the answer does not tell whether the user exists. No password matches it.
    fn stand_in(&self, username: &str) -> ScramCredential {
        let salt = hmac(&self.secret, format!("salt\0{username}").as_bytes());
        ScramCredential {
            salt: salt[..SALT_LEN].to_vec(),
            iterations: DEFAULT_ITERATIONS,
            stored_key: hmac(&self.secret, format!("stored\0{username}").as_bytes()),
            server_key: [0; KEY_LEN],
        }
    }
}

impl Authenticator for ScramSha256 {
    fn supports(&self, listener: ListenerId, method: &str) -> bool {
        method == SCRAM_SHA_256 && self.credentials.offered(listener)
    }

    fn start(&mut self, request: &AuthRequest<'_>, data: Option<&[u8]>) -> AuthStep {
        let first = match ClientFirst::parse(data.unwrap_or_default()) {
            Ok(first) => first,
            Err(why) => return refuse(AuthFailure::NotAuthorized, why),
        };
        // The SCRAM user is who the client connects as: it may not differ from the CONNECT
        // User Name, nor, when re-authenticating, from the user already authenticated.
        if request.username.is_some_and(|u| u != first.username) {
            return refuse(
                AuthFailure::NotAuthorized,
                "SCRAM user name differs from the MQTT user name",
            );
        }
        let (credential, known) = match self.credentials.lookup(request.listener, &first.username) {
            Some(c) => (c, true),
            None => (self.stand_in(&first.username), false),
        };
        let nonce = format!("{}{}", first.nonce, self.server_nonce());
        let exchange = server_first(first, credential, known, nonce);
        AuthStep::Continue {
            data: Bytes::from(exchange.server_first.clone().into_bytes()),
            exchange: Box::new(exchange),
        }
    }
}

fn refuse(failure: AuthFailure, why: &str) -> AuthStep {
    tracing::debug!(method = SCRAM_SHA_256, "authentication refused: {why}");
    AuthStep::Failure(failure)
}

/// The server-first message for a parsed client-first message, and the state that waits for
/// the client-final message. `nonce` is the client's nonce followed by the server's.
fn server_first(
    first: ClientFirst,
    credential: ScramCredential,
    known: bool,
    nonce: String,
) -> AwaitingFinal {
    let server_first = format!(
        "r={nonce},s={},i={}",
        STANDARD.encode(&credential.salt),
        credential.iterations
    );
    AwaitingFinal {
        username: first.username,
        gs2_header: first.gs2_header,
        client_first_bare: first.bare,
        server_first,
        nonce,
        credential,
        known,
    }
}

/// A parsed client-first message (RFC 5802, 7).
#[derive(Debug)]
struct ClientFirst {
    /// `n,,` or `y,,` (or with `a=` naming the user itself).
    gs2_header: String,
    /// client-first-message-bare, part of the AuthMessage.
    bare: String,
    /// The user name, `=2C` and `=3D` decoded.
    username: String,
    nonce: String,
}

impl ClientFirst {
    fn parse(data: &[u8]) -> Result<ClientFirst, &'static str> {
        let text = std::str::from_utf8(data).map_err(|_| "client-first message is not UTF-8")?;
        let mut parts = text.splitn(3, ',');
        let (Some(cbind), Some(authzid), Some(bare)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err("client-first message has no GS2 header");
        };
        match cbind {
            // "y": the client could bind but thinks the server cannot, which is true.
            "n" | "y" => {}
            _ if cbind.starts_with("p=") => return Err("channel binding is not supported"),
            _ => return Err("bad GS2 channel binding flag"),
        }
        let mut attributes = bare.split(',');
        let username = match attributes.next() {
            Some(m) if m.starts_with("m=") => return Err("mandatory extension not supported"),
            Some(n) => decode_name(n.strip_prefix("n=").ok_or("user name missing")?)?,
            None => return Err("user name missing"),
        };
        if username.is_empty() {
            return Err("empty user name");
        }
        let nonce = attributes
            .next()
            .and_then(|r| r.strip_prefix("r="))
            .ok_or("nonce missing")?;
        if nonce.is_empty() || !nonce.bytes().all(is_printable) {
            return Err("bad client nonce");
        }
        // An authorization identity other than the user itself is not supported.
        if !authzid.is_empty() {
            let authzid = decode_name(authzid.strip_prefix("a=").ok_or("bad authzid")?)?;
            if authzid != username {
                return Err("authorization identity differs from the user name");
            }
        }
        Ok(ClientFirst {
            gs2_header: format!("{cbind},{authzid},"),
            bare: bare.to_owned(),
            username,
            nonce: nonce.to_owned(),
        })
    }
}

/// RFC 5802 `printable`: visible ASCII except ','.
fn is_printable(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && b != b','
}

/// A `saslname`: `=2C` stands for ',' and `=3D` for '='; any other '=' is malformed.
fn decode_name(text: &str) -> Result<String, &'static str> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let escape = rest.get(i..i + 3).ok_or("bad escape in user name")?;
        out.push(match escape {
            "=2C" => ',',
            "=3D" => '=',
            _ => return Err("bad escape in user name"),
        });
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The server-first message was sent; the client-final message is awaited.
struct AwaitingFinal {
    username: String,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    /// The whole nonce, client's and server's.
    nonce: String,
    credential: ScramCredential,
    /// False for a stand-in credential, which must fail whatever the proof.
    known: bool,
}

impl fmt::Debug for AwaitingFinal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwaitingFinal")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl AwaitingFinal {
    /// Checks the client-final message; on success, the server-final message.
    fn verify(&self, data: &[u8]) -> Result<String, (AuthFailure, &'static str)> {
        let malformed = |why| (AuthFailure::NotAuthorized, why);
        let text = std::str::from_utf8(data).map_err(|_| malformed("client-final is not UTF-8"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(malformed("client proof missing"))?;
        let mut attributes = without_proof.split(',');
        let binding = attributes
            .next()
            .and_then(|c| c.strip_prefix("c="))
            .ok_or(malformed("channel binding missing"))?;
        // Without channel binding, c= carries the GS2 header alone.
        let binding = STANDARD
            .decode(binding)
            .map_err(|_| malformed("channel binding is not base64"))?;
        if binding != self.gs2_header.as_bytes() {
            return Err(malformed("channel binding differs from the GS2 header"));
        }
        let nonce = attributes
            .next()
            .and_then(|r| r.strip_prefix("r="))
            .ok_or(malformed("nonce missing"))?;
        if nonce != self.nonce {
            return Err(malformed("nonce differs from the server's"));
        }
        let proof: [u8; KEY_LEN] = STANDARD
            .decode(proof)
            .ok()
            .and_then(|p| p.try_into().ok())
            .ok_or(malformed("client proof is not base64 for 32 bytes"))?;

        let auth_message = format!(
            "{},{},{without_proof}",
            self.client_first_bare, self.server_first
        );
        let c = &self.credential;
        let client_signature = hmac(&c.stored_key, auth_message.as_bytes());
        let client_key: [u8; KEY_LEN] = std::array::from_fn(|i| proof[i] ^ client_signature[i]);
        let matches = sha256(&client_key).ct_eq(&c.stored_key) & u8::from(self.known).ct_eq(&1);
        if !bool::from(matches) {
            return Err((AuthFailure::BadUserNameOrPassword, "invalid client proof"));
        }
        let server_signature = hmac(&c.server_key, auth_message.as_bytes());
        Ok(format!("v={}", STANDARD.encode(server_signature)))
    }
}

impl AuthExchange for AwaitingFinal {
    fn step(self: Box<Self>, data: Option<&[u8]>) -> AuthStep {
        match self.verify(data.unwrap_or_default()) {
            Ok(server_final) => AuthStep::Success {
                data: Some(Bytes::from(server_final.into_bytes())),
                username: ByteString::from(self.username),
            },
            Err((failure, why)) => refuse(failure, why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7677, 3: user "user", password "pencil".
    const CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    const SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    fn rfc_credential() -> ScramCredential {
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        ScramCredential::new(b"pencil", &salt, 4096).unwrap()
    }

    /// The exchange after the client-first message, with RFC 7677's server nonce injected.
    fn rfc_exchange(client_first: &str, credential: ScramCredential, known: bool) -> AwaitingFinal {
        let first = ClientFirst::parse(client_first.as_bytes()).unwrap();
        let nonce = format!("{}{SERVER_NONCE}", first.nonce);
        server_first(first, credential, known, nonce)
    }

    #[test]
    fn rfc_7677_test_vector() {
        let exchange = rfc_exchange(CLIENT_FIRST, rfc_credential(), true);
        assert_eq!(exchange.server_first, SERVER_FIRST);
        match Box::new(exchange).step(Some(CLIENT_FINAL.as_bytes())) {
            AuthStep::Success { data, username } => {
                assert_eq!(data.as_deref(), Some(SERVER_FINAL.as_bytes()));
                assert_eq!(username, "user");
            }
            other => panic!("expected success, got {other:?}"),
        }
    }

    #[test]
    fn stored_parts_round_trip_and_plain_password_verifies() {
        let c = rfc_credential();
        let again =
            ScramCredential::from_parts(c.salt(), c.iterations(), *c.stored_key(), *c.server_key())
                .unwrap();
        assert_eq!(again, c);
        assert!(c.verify_password(b"pencil"));
        assert!(!c.verify_password(b"pencil "));
        assert!(!c.verify_password(b""));
    }

    #[test]
    fn bad_parameters_are_errors() {
        assert_eq!(
            ScramCredential::new(b"pw", b"", 4096),
            Err(CredentialError::EmptySalt)
        );
        assert_eq!(
            ScramCredential::new(b"pw", b"salt", 0),
            Err(CredentialError::ZeroIterations)
        );
    }

    #[test]
    fn wrong_password_fails_with_bad_credentials() {
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let other = ScramCredential::new(b"pencil2", &salt, 4096).unwrap();
        let exchange = rfc_exchange(CLIENT_FIRST, other, true);
        assert!(matches!(
            Box::new(exchange).step(Some(CLIENT_FINAL.as_bytes())),
            AuthStep::Failure(AuthFailure::BadUserNameOrPassword)
        ));
    }

    #[test]
    fn stand_in_credential_fails_even_with_the_right_proof() {
        // Same keys as the real credential, but marked unknown: must fail.
        let exchange = rfc_exchange(CLIENT_FIRST, rfc_credential(), false);
        assert!(matches!(
            Box::new(exchange).step(Some(CLIENT_FINAL.as_bytes())),
            AuthStep::Failure(AuthFailure::BadUserNameOrPassword)
        ));
    }

    #[test]
    fn tampered_client_final_fails() {
        let cases = [
            // Nonce changed.
            CLIENT_FINAL.replace("k0,p=", "k1,p="),
            // Channel binding claims "y".
            CLIENT_FINAL.replace("c=biws", "c=eSws"),
            // Proof changed in one character.
            CLIENT_FINAL.replace("p=dHzb", "p=dHzc"),
            // Proof too short.
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=AAAA".to_owned(),
            // No proof, not UTF-8, empty.
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".to_owned(),
            String::new(),
        ];
        for case in cases {
            let exchange = rfc_exchange(CLIENT_FIRST, rfc_credential(), true);
            let step = Box::new(exchange).step(Some(case.as_bytes()));
            assert!(matches!(step, AuthStep::Failure(_)), "{case}: {step:?}");
        }
        let exchange = rfc_exchange(CLIENT_FIRST, rfc_credential(), true);
        assert!(matches!(
            Box::new(exchange).step(Some(&[0xff, 0xfe])),
            AuthStep::Failure(AuthFailure::NotAuthorized)
        ));
        let exchange = rfc_exchange(CLIENT_FIRST, rfc_credential(), true);
        assert!(matches!(
            Box::new(exchange).step(None),
            AuthStep::Failure(AuthFailure::NotAuthorized)
        ));
    }

    #[test]
    fn client_first_parsing() {
        let first = ClientFirst::parse(b"n,,n=a=2Cb=3Dc,r=abc,x=ext").unwrap();
        assert_eq!(first.username, "a,b=c");
        assert_eq!(first.nonce, "abc");
        assert_eq!(first.gs2_header, "n,,");
        assert_eq!(first.bare, "n=a=2Cb=3Dc,r=abc,x=ext");
        let first = ClientFirst::parse(b"y,a=user,n=user,r=abc").unwrap();
        assert_eq!(first.gs2_header, "y,a=user,");

        for bad in [
            &b""[..],
            b"n,,",
            b"n=user,r=abc",
            b"p=tls-unique,,n=user,r=abc",
            b"x,,n=user,r=abc",
            b"n,,m=ext,n=user,r=abc",
            b"n,,n=,r=abc",
            b"n,,n=us=er,r=abc",
            b"n,,n=user=2,r=abc",
            b"n,,n=user",
            b"n,,n=user,r=",
            b"n,,n=user,r=a b",
            b"n,,r=abc,n=user",
            b"n,a=other,n=user,r=abc",
            b"n,x=user,n=user,r=abc",
            b"n,,n=\xff,r=abc",
        ] {
            assert!(
                ClientFirst::parse(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    fn request<'a>(username: Option<&'a str>) -> AuthRequest<'a> {
        AuthRequest {
            listener: ListenerId(0),
            client_id: "c",
            username,
            tls_identity: None,
            peer: None,
            method: SCRAM_SHA_256,
            reauthenticating: false,
        }
    }

    fn authenticator() -> ScramSha256 {
        let mut users = BTreeMap::new();
        users.insert("user".to_owned(), rfc_credential());
        ScramSha256::new(Box::new(users), [7; 32])
    }

    fn server_first_of(step: AuthStep) -> String {
        match step {
            AuthStep::Continue { data, .. } => String::from_utf8(data.to_vec()).unwrap(),
            other => panic!("expected continue, got {other:?}"),
        }
    }

    #[test]
    fn server_nonces_come_from_the_seed() {
        let mut a = authenticator();
        let mut b = authenticator();
        let first = Some(CLIENT_FIRST.as_bytes());
        let (a1, b1) = (
            server_first_of(a.start(&request(None), first)),
            server_first_of(b.start(&request(None), first)),
        );
        assert_eq!(a1, b1, "the same seed gives the same nonce");
        assert!(a1.starts_with("r=rOprNGfwEbeRWgbNEkqO"));
        assert!(a1.ends_with(",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"));
        let a2 = server_first_of(a.start(&request(None), first));
        assert_ne!(a1, a2, "each exchange has a fresh nonce");
    }

    #[test]
    fn unknown_users_get_a_stable_stand_in_salt() {
        let mut a = authenticator();
        let first = Some(&b"n,,n=nobody,r=abc"[..]);
        let salt = |s: String| s.split(',').nth(1).unwrap().to_owned();
        let s1 = salt(server_first_of(a.start(&request(None), first)));
        let s2 = salt(server_first_of(a.start(&request(None), first)));
        assert_eq!(s1, s2);
        let other = salt(server_first_of(
            a.start(&request(None), Some(&b"n,,n=someone,r=abc"[..])),
        ));
        assert_ne!(s1, other);
    }

    #[test]
    fn scram_user_must_match_the_mqtt_user_name() {
        let mut a = authenticator();
        let first = Some(CLIENT_FIRST.as_bytes());
        assert!(matches!(
            a.start(&request(Some("other")), first),
            AuthStep::Failure(AuthFailure::NotAuthorized)
        ));
        server_first_of(a.start(&request(Some("user")), first));
        assert!(a.supports(ListenerId(3), SCRAM_SHA_256));
        assert!(!a.supports(ListenerId(0), "SCRAM-SHA-1"));
    }
}
