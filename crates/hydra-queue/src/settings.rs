//! What a client needs to connect, as a plain serializable value: build it on the serving
//! host, ship it to another process or host (JSON, MessagePack...), connect there.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::protocol::DEFAULT_MAX_FRAME;

/// How often the client library sends heartbeats on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Heartbeat {
    /// A third of the lease timeout the server announces at connection time.
    #[default]
    Auto,
    /// A fixed interval.
    Every(Duration),
    /// None at all: the server drops the connection after its lease timeout unless requests
    /// keep it busy. For tests of lost leases.
    Off,
}

/// Connection settings of a client.
///
/// ```
/// use hydra_queue::ClientSettings;
/// let settings = ClientSettings::new("127.0.0.1:7878", "worker");
/// let shipped = serde_json::to_string(&settings).unwrap();
/// let there: ClientSettings = serde_json::from_str(&shipped).unwrap();
/// assert!(there.unique().name.starts_with("worker-"));
/// ```
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClientSettings {
    /// `host:port` of the server.
    pub addr: String,
    /// The client's name, shown in the server's reports (dead items, failures).
    pub name: String,
    /// Shared secret for token authentication, if the server requires one.
    #[serde(default)]
    pub token: Option<String>,
    /// Heartbeat policy.
    #[serde(default)]
    pub heartbeat: Heartbeat,
    /// How long connecting (TCP, TLS and handshake) may take.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Duration,
    /// Largest frame body accepted from the server.
    #[serde(default = "default_max_frame")]
    pub max_frame: usize,
    /// TLS settings; `None` for plain TCP.
    #[serde(default)]
    pub tls: Option<crate::tls::ClientTls>,
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_max_frame() -> usize {
    DEFAULT_MAX_FRAME
}

impl fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientSettings")
            .field("addr", &self.addr)
            .field("name", &self.name)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("heartbeat", &self.heartbeat)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_frame", &self.max_frame)
            .field("tls", &self.tls)
            .finish()
    }
}

impl ClientSettings {
    /// Plain TCP settings with defaults.
    pub fn new(addr: impl Into<String>, name: impl Into<String>) -> Self {
        ClientSettings {
            addr: addr.into(),
            name: name.into(),
            token: None,
            heartbeat: Heartbeat::Auto,
            connect_timeout: default_connect_timeout(),
            max_frame: DEFAULT_MAX_FRAME,
            tls: None,
        }
    }

    /// The same settings with a token.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The same settings with another heartbeat policy.
    pub fn with_heartbeat(mut self, heartbeat: Heartbeat) -> Self {
        self.heartbeat = heartbeat;
        self
    }

    /// The same settings with TLS.
    pub fn with_tls(mut self, tls: crate::tls::ClientTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The same settings with a name made unique to this host, process and call:
    /// `{name}-{hostname}-{pid}-{n}`.
    pub fn unique(&self) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let mut s = self.clone();
        s.name = format!("{}-{}-{}-{n}", self.name, hostname(), std::process::id());
        s
    }
}

/// The settings to consume from, or feed, one named queue: what a host ships to a worker.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct QueueSettings {
    /// How to reach the server.
    pub client: ClientSettings,
    /// The queue's name.
    pub queue: String,
}

/// This machine's host name, or "host" when it cannot be read.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "host".to_string())
}
