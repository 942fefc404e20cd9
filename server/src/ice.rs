//! STUN/TURN servers and their credentials (`webrtc_ice_servers`, `webrtc_turn_*`), for the
//! server's own ICE agents and for clients (REST signaling's `ice_servers`, WHEP/WHIP `Link`
//! headers, MQTT sessions).
//!
//! TURN credentials are static (`webrtc_turn_username`/`webrtc_turn_credential`), or
//! time-limited ones derived from a secret shared with the TURN server (the TURN REST API,
//! draft-uberti-behave-turn-rest, as coturn's `use-auth-secret` checks them): the username is
//! `EXPIRY:NAME` (EXPIRY in Unix seconds) and the credential base64(HMAC-SHA1(secret, username)).
//! They are issued per session ([`IceServers::issue`]), so a credential that leaks stops working
//! at its expiry and the secret itself never leaves the server.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;

use crate::config::{invalid, Config, ConfigError};

/// A STUN or TURN server with the credentials one session uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceServer {
    pub urls: Vec<String>,
    pub username: Option<String>,
    pub credential: Option<String>,
}

/// How TURN servers are authenticated.
#[derive(Clone, PartialEq, Eq)]
enum TurnAuth {
    /// No `turn:` URL.
    None,
    Static {
        username: String,
        credential: String,
    },
    /// Time-limited credentials from a shared secret.
    Rest {
        secret: String,
        ttl: Duration,
    },
}

// Never print a credential or the secret.
impl std::fmt::Debug for TurnAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TurnAuth::None => f.write_str("None"),
            TurnAuth::Static { username, .. } => write!(f, "Static {{ username: {username:?}, .. }}"),
            TurnAuth::Rest { ttl, .. } => write!(f, "Rest {{ ttl: {ttl:?}, .. }}"),
        }
    }
}

/// The configured STUN/TURN servers; [`IceServers::issue`] hands out a session's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceServers {
    urls: Vec<String>,
    auth: TurnAuth,
}

impl Default for IceServers {
    fn default() -> Self {
        Self { urls: Vec::new(), auth: TurnAuth::None }
    }
}

impl IceServers {
    /// `webrtc_ice_servers` and the TURN credentials, validated.
    pub fn from_config(c: &Config) -> Result<Self, ConfigError> {
        let urls: Vec<String> =
            c.webrtc_ice_servers.split(',').map(str::trim).filter(|u| !u.is_empty()).map(String::from).collect();
        for u in &urls {
            if !["stun:", "stuns:", "turn:", "turns:"].iter().any(|p| u.starts_with(p)) {
                return Err(invalid(
                    "webrtc_ice_servers",
                    format!("{u:?} must start with stun:, stuns:, turn: or turns:"),
                ));
            }
        }
        let turn = urls.iter().any(|u| u.starts_with("turn"));
        let secret = c.webrtc_turn_secret.trim();
        let statics = !c.webrtc_turn_username.is_empty() || !c.webrtc_turn_credential.is_empty();
        if !secret.is_empty() && statics {
            return Err(invalid(
                "webrtc_turn_secret",
                "set webrtc_turn_secret (time-limited credentials) or webrtc_turn_username and \
                 webrtc_turn_credential (static ones), not both",
            ));
        }
        let auth = if !turn {
            TurnAuth::None
        } else if !secret.is_empty() {
            TurnAuth::Rest { secret: secret.to_owned(), ttl: c.webrtc_turn_credential_ttl.0 }
        } else if c.webrtc_turn_username.is_empty() || c.webrtc_turn_credential.is_empty() {
            return Err(invalid(
                "webrtc_turn_username",
                "TURN servers need webrtc_turn_secret, or webrtc_turn_username and webrtc_turn_credential",
            ));
        } else {
            TurnAuth::Static { username: c.webrtc_turn_username.clone(), credential: c.webrtc_turn_credential.clone() }
        };
        Ok(Self { urls, auth })
    }

    /// Whether a `turn:`/`turns:` server is configured.
    pub fn has_turn(&self) -> bool {
        self.auth != TurnAuth::None
    }

    /// The servers with credentials for one session, `name` (a session id; it ends up in the
    /// TURN server's log) valid from now.
    pub fn issue(&self, name: &str) -> Vec<IceServer> {
        self.issue_at(name, SystemTime::now())
    }

    /// [`IceServers::issue`] as of `now`.
    pub fn issue_at(&self, name: &str, now: SystemTime) -> Vec<IceServer> {
        if self.urls.is_empty() {
            return Vec::new();
        }
        let (username, credential) = match &self.auth {
            TurnAuth::None => (None, None),
            TurnAuth::Static { username, credential } => (Some(username.clone()), Some(credential.clone())),
            TurnAuth::Rest { secret, ttl } => {
                let expiry = now.duration_since(UNIX_EPOCH).unwrap_or_default() + *ttl;
                let username = format!("{}:{name}", expiry.as_secs());
                let credential = rest_credential(secret, &username);
                (Some(username), Some(credential))
            }
        };
        vec![IceServer { urls: self.urls.clone(), username, credential }]
    }
}

/// The TURN REST API credential of `username`: base64(HMAC-SHA1(secret, username)).
pub fn rest_credential(secret: &str, username: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(ring::hmac::sign(&key, username.as_bytes()).as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> Result<IceServers, ConfigError> {
        IceServers::from_config(&Config::from_args(std::iter::once("railcast-server").chain(args.iter().copied()))?)
    }

    #[test]
    fn rest_credential_matches_coturns_formula() {
        // python3: base64.b64encode(hmac.new(b"north-sea", b"1700000000:railcast", hashlib.sha1).digest())
        assert_eq!(rest_credential("north-sea", "1700000000:railcast"), "Mx3Y40ued+djSLMhhSjMAgksoSA=");
    }

    #[test]
    fn each_session_gets_credentials_expiring_after_the_ttl() {
        let ice = config(&[
            "--webrtc-ice-servers",
            "turn:127.0.0.1:3478",
            "--webrtc-turn-secret",
            "north-sea",
            "--webrtc-turn-credential-ttl",
            "10m",
        ])
        .expect("config");
        let now = UNIX_EPOCH + Duration::from_secs(1_699_999_400);
        let servers = ice.issue_at("railcast", now);
        assert_eq!(
            servers,
            vec![IceServer {
                urls: vec!["turn:127.0.0.1:3478".into()],
                username: Some("1700000000:railcast".into()),
                credential: Some("Mx3Y40ued+djSLMhhSjMAgksoSA=".into()),
            }]
        );
        assert!(!format!("{ice:?}").contains("north-sea"), "Debug hides the secret: {ice:?}");
    }

    #[test]
    fn static_and_rest_credentials_exclude_each_other() {
        let turn = ["--webrtc-ice-servers", "turn:127.0.0.1:3478"];
        let both = [&turn[..], &["--webrtc-turn-secret", "s", "--webrtc-turn-username", "u"]].concat();
        assert_eq!(config(&both).expect_err("both").setting, "webrtc_turn_secret");
        assert_eq!(config(&turn).expect_err("none").setting, "webrtc_turn_username");
        let stun = config(&["--webrtc-ice-servers", "stun:127.0.0.1:3478"]).expect("stun");
        assert_eq!(stun.issue("x")[0].username, None);
        assert!(!stun.has_turn());
        assert!(config(&[]).expect("none").issue("x").is_empty());
    }
}
