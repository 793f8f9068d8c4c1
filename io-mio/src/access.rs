//! The daemon's authorizer: Mosquitto's `allow_anonymous`, `password_file`, `acl_file` and
//! `use_identity_as_username`, globally or per listener (`per_listener_settings`). Files are
//! read once at startup and again on SIGHUP; connected clients keep their connection.

use crate::acl::{self, AclFile};
use crate::config::DaemonConfig;
use crate::passwd::PasswordFile;
use midge_core::auth::{Access, Authorizer, ClientRef, ConnectDecision, ConnectRequest};
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
        Ok(FileAuthorizer { listeners })
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
