//! How long an upstream may take to start its answer (its response headers), per protocol
//! (R19; the config's `[router.timeouts]`). Long polls are the protocol, not a fault:
//! ActiveSync `Ping` and `Sync` hang for the heartbeat the device asked for (up to about 59
//! minutes), and an Outlook Anywhere channel (`RPC_IN_DATA` / `RPC_OUT_DATA`) lives for hours.
//! Bodies then stream for as long as they last.

use crate::router::protocol::Protocol;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResponseTimeouts {
    /// Every protocol not listed below (OWA, EWS, Autodiscover, OAB, 2003 paths).
    #[serde(with = "humantime_serde")]
    pub default: Duration,
    /// `/Microsoft-Server-ActiveSync`.
    #[serde(with = "humantime_serde")]
    pub activesync: Duration,
    /// `/rpc` (Outlook Anywhere).
    #[serde(with = "humantime_serde")]
    pub rpc: Duration,
}

impl Default for ResponseTimeouts {
    fn default() -> Self {
        Self {
            default: Duration::from_secs(120),
            activesync: Duration::from_secs(61 * 60),
            rpc: Duration::from_secs(24 * 3600),
        }
    }
}

impl ResponseTimeouts {
    /// The limit for a request to `path`.
    pub fn for_path(&self, path: &str) -> Duration {
        match Protocol::of_path(path) {
            Protocol::ActiveSync => self.activesync,
            Protocol::Rpc => self.rpc,
            _ => self.default,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r19_long_polls_get_their_own_limits() {
        let t = ResponseTimeouts::default();
        assert_eq!(
            t.for_path("/Microsoft-Server-ActiveSync?Cmd=Ping"),
            Duration::from_secs(3660),
            "a 59-minute Ping heartbeat fits"
        );
        assert_eq!(t.for_path("/rpc/rpcproxy.dll"), Duration::from_secs(86400));
        assert_eq!(t.for_path("/owa/"), Duration::from_secs(120));
        assert_eq!(t.for_path("/EWS/Exchange.asmx"), Duration::from_secs(120));
    }
}
