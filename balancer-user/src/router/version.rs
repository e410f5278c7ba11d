//! Exchange versions, oldest first: the order is what R12 compares.

use serde::Deserialize;
use std::fmt;

/// The version a site's Client Access nodes or a mailbox server run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
pub enum Version {
    /// Exchange 2000/2003 back end: HTTP from the front end (000), no EWS, no Autodiscover.
    #[serde(rename = "2003")]
    Exchange2003,
    /// Exchange 2007 RTM: cannot be proxied to for EWS (001).
    #[serde(rename = "2007")]
    Exchange2007,
    #[serde(rename = "2007sp1")]
    Exchange2007Sp1,
    #[serde(rename = "2010")]
    Exchange2010,
}

impl Version {
    /// A 2003-era back end (R13).
    pub fn is_legacy(self) -> bool {
        self == Version::Exchange2003
    }

    /// EWS requests can be proxied to it (R10: 2007 SP1 or later).
    pub fn supports_ews_proxy(self) -> bool {
        self >= Version::Exchange2007Sp1
    }

    /// The number stored in the directory map.
    pub fn code(self) -> u8 {
        match self {
            Version::Exchange2003 => 1,
            Version::Exchange2007 => 2,
            Version::Exchange2007Sp1 => 3,
            Version::Exchange2010 => 4,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => Version::Exchange2003,
            2 => Version::Exchange2007,
            3 => Version::Exchange2007Sp1,
            4 => Version::Exchange2010,
            _ => return None,
        })
    }
}

impl Version {
    /// Every version, oldest first.
    pub const ALL: [Version; 4] = [
        Version::Exchange2003,
        Version::Exchange2007,
        Version::Exchange2007Sp1,
        Version::Exchange2010,
    ];

    /// The spelling used in config files and directory imports (`2003`, `2007`, `2007sp1`,
    /// `2010`).
    pub fn key(self) -> &'static str {
        match self {
            Version::Exchange2003 => "2003",
            Version::Exchange2007 => "2007",
            Version::Exchange2007Sp1 => "2007sp1",
            Version::Exchange2010 => "2010",
        }
    }
}

impl std::str::FromStr for Version {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        Version::ALL
            .into_iter()
            .find(|v| v.key().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown version {s:?} (expected 2003, 2007, 2007sp1 or 2010)"))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Version::Exchange2003 => "Exchange 2003",
            Version::Exchange2007 => "Exchange 2007",
            Version::Exchange2007Sp1 => "Exchange 2007 SP1",
            Version::Exchange2010 => "Exchange 2010",
        })
    }
}
