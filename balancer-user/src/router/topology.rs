//! What the decision needs to know about the organisation: every site's version, its
//! ExternalURLs per virtual directory (a site is Internet-facing when its OWA ExternalURL is
//! set), and whether redirection to it is enabled (001, "Disabling Redirection").

use super::version::Version;

/// One Active Directory site, as the decision sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    pub name: String,
    pub version: Version,
    pub external: ExternalUrls,
    /// Redirection to this site is allowed (`RedirectToOptimalOWAServer`); turned off while
    /// its Internet link is down, so that its users are proxied instead.
    pub redirect_enabled: bool,
}

/// ExternalURLs of a site's virtual directories; `None` is Exchange's `$null`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExternalUrls {
    pub owa: Option<String>,
    pub activesync: Option<String>,
    pub ews: Option<String>,
    pub autodiscover: Option<String>,
    pub oab: Option<String>,
}

impl ExternalUrls {
    /// Every virtual directory under one base URL (`https://www.usa.contoso.com`).
    pub fn from_base(base: &str) -> Self {
        let base = base.trim_end_matches('/');
        Self {
            owa: Some(format!("{base}/owa")),
            activesync: Some(format!("{base}/Microsoft-Server-ActiveSync")),
            ews: Some(format!("{base}/EWS/Exchange.asmx")),
            autodiscover: Some(format!("{base}/Autodiscover/Autodiscover.xml")),
            oab: Some(format!("{base}/OAB")),
        }
    }
}

/// How OWA redirects to another Internet-facing site (R8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OwaRedirect {
    /// A page that shows the correct URL as a link: the user clicks it (001).
    #[default]
    LinkPage,
    /// A silent `302 Found`.
    Found,
}

/// The organisation and this node's place in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub sites: Vec<Site>,
    /// This node's site.
    pub this_site: String,
    pub owa_redirect: OwaRedirect,
}

impl Topology {
    pub fn site(&self, name: &str) -> Option<&Site> {
        self.sites.iter().find(|s| s.name == name)
    }

    /// This node's site (it must be one of the sites: checked when the topology is built).
    pub fn this(&self) -> &Site {
        self.site(&self.this_site)
            .expect("this node's site is one of the sites")
    }
}
