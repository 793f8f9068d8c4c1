//! The client side of SCRAM-SHA-256 (RFC 5802, RFC 7677) as MQTT 5 enhanced authentication
//! carries it: client-first in CONNECT (or AUTH 0x19), server-first in AUTH 0x18, client-final
//! in AUTH 0x18, server-final in the CONNACK (or AUTH 0x00). No channel binding (`n,,`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// The Authentication Method of SCRAM-SHA-256.
pub const METHOD: &str = "SCRAM-SHA-256";

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC key");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// One exchange, from client-first to the check of server-final.
#[derive(Debug)]
pub struct ScramClient {
    user: String,
    password: Vec<u8>,
    nonce: String,
    client_first_bare: String,
    /// The server signature server-final must carry, once client-final is made.
    expected_server_signature: Option<[u8; 32]>,
}

impl ScramClient {
    /// `nonce` should differ between exchanges; printable ASCII without commas.
    pub fn new(user: &str, password: &str, nonce: &str) -> ScramClient {
        ScramClient {
            user: user.to_owned(),
            password: password.as_bytes().to_vec(),
            nonce: nonce.to_owned(),
            client_first_bare: format!("n={user},r={nonce}"),
            expected_server_signature: None,
        }
    }

    /// The client-first message.
    pub fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// The client-final message answering `server_first`; panics when server-first is not
    /// well-formed or does not extend this client's nonce (a broker bug for the test).
    pub fn client_final(&mut self, server_first: &[u8]) -> Vec<u8> {
        let text = std::str::from_utf8(server_first).expect("server-first is UTF-8");
        let (mut nonce, mut salt, mut iterations) = (None, None, None);
        for attr in text.split(',') {
            match attr.split_once('=') {
                Some(("r", v)) => nonce = Some(v),
                Some(("s", v)) => salt = Some(STANDARD.decode(v).expect("salt is base64")),
                Some(("i", v)) => iterations = Some(v.parse::<u32>().expect("iteration count")),
                _ => {}
            }
        }
        let nonce = nonce.expect("server-first has r=");
        assert!(
            nonce.starts_with(&self.nonce) && nonce.len() > self.nonce.len(),
            "server nonce {nonce} does not extend the client's {}",
            self.nonce
        );
        let salted = pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(
            &self.password,
            &salt.expect("server-first has s="),
            iterations.expect("server-first has i="),
        );
        let client_key = hmac(&salted, b"Client Key");
        let stored_key: [u8; 32] = Sha256::digest(client_key).into();
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{text},{without_proof}", self.client_first_bare);
        let signature = hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = hmac(&salted, b"Server Key");
        self.expected_server_signature = Some(hmac(&server_key, auth_message.as_bytes()));
        format!("{without_proof},p={}", STANDARD.encode(proof)).into_bytes()
    }

    /// Whether `server_final` (`v=...`) proves the server knows the credential.
    pub fn server_final_ok(&self, server_final: &[u8]) -> bool {
        let Some(expected) = self.expected_server_signature else {
            return false;
        };
        server_final == format!("v={}", STANDARD.encode(expected)).as_bytes()
    }

    /// The user name of the exchange.
    pub fn user(&self) -> &str {
        &self.user
    }
}
