//! The daemon's authorizer: Mosquitto's `allow_anonymous`, `password_file`, `acl_file` and
//! `use_identity_as_username`, globally or per listener (`per_listener_settings`), and its
//! authenticator: SCRAM-SHA-256 (MQTT 5 enhanced authentication) on every listener with a
//! password file, from the same file's `$scram-sha-256$` entries. Files are read once at startup
//! and again on SIGHUP; connected clients keep their connection.

use crate::acl::{self, AclFile};
use crate::config::DaemonConfig;
use crate::passwd::{PasswordFile, ScramLookup};
use midge_core::auth::scram::{ScramCredential, ScramCredentials, ScramSha256};
use midge_core::auth::{Access, Authorizer, ClientRef, ConnectDecision, ConnectRequest};
use midge_core::broker::ListenerId;
use midge_core::codec::{ByteString, ConnectReason};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// The rules of one listener.
#[derive(Debug, Clone)]
struct Rules {
    allow_anonymous: bool,
    passwords: Option<Arc<PasswordFile>>,
    acl: Option<Arc<AclFile>>,
    /// The client certificate's Common Name is the user name; no password is checked.
    identity_as_username: bool,
}

/// Decides connects and topics from the configuration's files.
#[derive(Debug, Clone)]
pub struct FileAuthorizer {
    /// By listener id (the listener's index in the configuration).
    listeners: Vec<Rules>,
}

impl FileAuthorizer {
    /// Reads every password and ACL file the configuration names (each once), or says which
    /// one is wrong and where.
    pub fn load(config: &DaemonConfig) -> Result<FileAuthorizer, String> {
        let mut passwords: BTreeMap<PathBuf, Arc<PasswordFile>> = BTreeMap::new();
        let mut acls: BTreeMap<PathBuf, Arc<AclFile>> = BTreeMap::new();
        let mut listeners = Vec::with_capacity(config.listeners.len());
        for listener in &config.listeners {
            let security = config.security_for(listener);
            let passwords = match &security.password_file {
                Some(path) => Some(match passwords.get(path) {
                    Some(file) => Arc::clone(file),
                    None => {
                        let file = Arc::new(PasswordFile::load(path).map_err(|e| e.to_string())?);
                        passwords.insert(path.clone(), Arc::clone(&file));
                        file
                    }
                }),
                None => None,
            };
            let acl = match &security.acl_file {
                Some(path) => Some(match acls.get(path) {
                    Some(file) => Arc::clone(file),
                    None => {
                        let file = Arc::new(AclFile::load(path).map_err(|e| e.to_string())?);
                        acls.insert(path.clone(), Arc::clone(&file));
                        file
                    }
                }),
                None => None,
            };
            listeners.push(Rules {
                allow_anonymous: config.allow_anonymous(listener),
                passwords,
                acl,
                identity_as_username: listener
                    .tls
                    .as_ref()
                    .is_some_and(|t| t.use_identity_as_username),
            });
        }
        for (path, file) in &passwords {
            let mosquitto = file.mosquitto_entries();
            if mosquitto > 0 {
                tracing::info!(
                    "{}: {mosquitto} of {} users have Mosquitto ($6$/$7$) hashes: they can log in \
                     with a password but not with SCRAM-SHA-256 (`midge passwd -H scram-sha-256` \
                     writes entries that can do both)",
                    path.display(),
                    file.len()
                );
            }
        }
        Ok(FileAuthorizer { listeners })
    }

    /// The SCRAM-SHA-256 authenticator over the same password files, its nonces from a
    /// generator seeded by the operating system.
    pub fn authenticator(&self) -> Result<ScramSha256, String> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| format!("cannot read random seed: {e}"))?;
        Ok(ScramSha256::new(Box::new(self.scram_credentials()), seed))
    }

    /// The password files as SCRAM credentials: offered on listeners with a password file,
    /// except those where the certificate identity is the user name and no password counts.
    pub fn scram_credentials(&self) -> FileScramCredentials {
        FileScramCredentials {
            listeners: self
                .listeners
                .iter()
                .map(|r| {
                    r.passwords
                        .as_ref()
                        .filter(|_| !r.identity_as_username)
                        .map(Arc::clone)
                })
                .collect(),
        }
    }
}

/// SCRAM-SHA-256 credentials from password files, by listener.
#[derive(Debug, Clone)]
pub struct FileScramCredentials {
    listeners: Vec<Option<Arc<PasswordFile>>>,
}

impl ScramCredentials for FileScramCredentials {
    fn offered(&self, listener: ListenerId) -> bool {
        self.listeners
            .get(listener.0 as usize)
            .is_some_and(Option::is_some)
    }

    fn lookup(&self, listener: ListenerId, username: &str) -> Option<ScramCredential> {
        let file = self.listeners.get(listener.0 as usize)?.as_ref()?;
        match file.scram_lookup(username) {
            ScramLookup::Credential(c) => Some(c.clone()),
            ScramLookup::NotScram => {
                tracing::warn!(
                    user = username,
                    "SCRAM-SHA-256 login refused: the user's password file entry is a Mosquitto \
                     hash ($6$/$7$), which can only check passwords; rewrite it with \
                     `midge passwd -H scram-sha-256`"
                );
                None
            }
            ScramLookup::Unknown => None,
        }
    }
}

impl Authorizer for FileAuthorizer {
    fn connect(&mut self, r: &ConnectRequest<'_>) -> ConnectDecision {
        let Some(rules) = self.listeners.get(r.listener.0 as usize) else {
            return ConnectDecision::Refuse(ConnectReason::NotAuthorized);
        };
        if rules.identity_as_username {
            // The certificate was verified by TLS; its identity stands in for user name and
            // password, as in Mosquitto.
            return match r.tls_identity {
                Some(identity) => ConnectDecision::Accept {
                    username: Some(ByteString::from(identity)),
                },
                None => ConnectDecision::Refuse(ConnectReason::NotAuthorized),
            };
        }
        // An authenticator (SCRAM, with this listener's password file) proved the user name.
        if let (Some(_), Some(user)) = (r.authentication_method, r.username) {
            return ConnectDecision::Accept {
                username: Some(ByteString::from(user)),
            };
        }
        match (r.username, &rules.passwords) {
            (None, _) if rules.allow_anonymous => ConnectDecision::Accept { username: None },
            (None, _) => ConnectDecision::Refuse(ConnectReason::NotAuthorized),
            (Some(user), Some(passwords)) => {
                if passwords.verify(user, r.password.unwrap_or_default()) {
                    ConnectDecision::Accept {
                        username: Some(ByteString::from(user)),
                    }
                } else {
                    ConnectDecision::Refuse(ConnectReason::BadUserNameOrPassword)
                }
            }
            // No password file: a user name identifies, it does not authenticate, so it is
            // accepted exactly where anonymous clients are (Mosquitto 2).
            (Some(user), None) if rules.allow_anonymous => ConnectDecision::Accept {
                username: Some(ByteString::from(user)),
            },
            (Some(_), None) => ConnectDecision::Refuse(ConnectReason::NotAuthorized),
        }
    }

    fn authorize(&self, client: &ClientRef<'_>, access: Access, topic: &str) -> bool {
        let Some(rules) = self.listeners.get(client.listener.0 as usize) else {
            return false;
        };
        let Some(acl) = &rules.acl else {
            return true;
        };
        let access = match access {
            Access::Publish => acl::Access::Write,
            Access::Subscribe => acl::Access::Subscribe,
            Access::Receive => acl::Access::Read,
        };
        acl.check(client.client_id, client.username, access, topic)
    }

    fn checks_topics(&self) -> bool {
        self.listeners.iter().any(|r| r.acl.is_some())
    }
}
