//! Which Client Access protocol a request is for, from its virtual directory (the first path
//! segment, case-insensitive as IIS treats it).

/// A virtual directory the router knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// `/owa`: Outlook Web Access for 2007+ mailboxes.
    Owa,
    /// `/Microsoft-Server-ActiveSync`.
    ActiveSync,
    /// `/EWS`: Exchange Web Services (the Availability service included).
    Ews,
    /// `/Autodiscover`.
    Autodiscover,
    /// `/OAB`: the offline address book.
    Oab,
    /// `/rpc`: Outlook Anywhere; the local node talks RPC to any mailbox server (001).
    Rpc,
    /// `/exchange`: OWA for Exchange 2003 mailboxes.
    LegacyExchange,
    /// `/public`: public folders on Exchange 2003.
    LegacyPublic,
    /// `/exchweb`: OWA 2003 resources.
    LegacyExchweb,
    /// Anything else: served here.
    Other,
}

impl Protocol {
    /// Classifies a request path (`/owa/...`).
    pub fn of_path(path: &str) -> Self {
        let first = path
            .trim_start_matches('/')
            .split(['/', '?'])
            .next()
            .unwrap_or("");
        // Every request is classified: compared in place, without a lowercased copy.
        const DIRECTORIES: [(&str, Protocol); 9] = [
            ("owa", Protocol::Owa),
            ("microsoft-server-activesync", Protocol::ActiveSync),
            ("ews", Protocol::Ews),
            ("autodiscover", Protocol::Autodiscover),
            ("oab", Protocol::Oab),
            ("rpc", Protocol::Rpc),
            ("exchange", Protocol::LegacyExchange),
            ("public", Protocol::LegacyPublic),
            ("exchweb", Protocol::LegacyExchweb),
        ];
        DIRECTORIES
            .iter()
            .find(|(name, _)| first.eq_ignore_ascii_case(name))
            .map_or(Protocol::Other, |(_, protocol)| *protocol)
    }

    /// The virtual directory as Exchange names it.
    pub fn vdir(self) -> &'static str {
        match self {
            Protocol::Owa => "owa",
            Protocol::ActiveSync => "Microsoft-Server-ActiveSync",
            Protocol::Ews => "EWS",
            Protocol::Autodiscover => "Autodiscover",
            Protocol::Oab => "OAB",
            Protocol::Rpc => "rpc",
            Protocol::LegacyExchange => "exchange",
            Protocol::LegacyPublic => "public",
            Protocol::LegacyExchweb => "exchweb",
            Protocol::Other => "",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_directories_are_case_insensitive() {
        assert_eq!(Protocol::of_path("/OWA/"), Protocol::Owa);
        assert_eq!(Protocol::of_path("/owa"), Protocol::Owa);
        assert_eq!(
            Protocol::of_path("/Microsoft-Server-ActiveSync?Cmd=Ping"),
            Protocol::ActiveSync
        );
        assert_eq!(Protocol::of_path("/ews/exchange.asmx"), Protocol::Ews);
        assert_eq!(
            Protocol::of_path("/autodiscover/autodiscover.xml"),
            Protocol::Autodiscover
        );
        assert_eq!(
            Protocol::of_path("/Exchange/alice"),
            Protocol::LegacyExchange
        );
        assert_eq!(Protocol::of_path("/rpc/rpcproxy.dll"), Protocol::Rpc);
        assert_eq!(Protocol::of_path("/"), Protocol::Other);
        assert_eq!(Protocol::of_path("/owaX"), Protocol::Other);
    }
}
