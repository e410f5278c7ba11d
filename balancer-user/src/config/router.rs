//! The `[router]` section and the L7 view of `[[sites]]`: what `balancer run` needs to build
//! the router (topology, upstreams, certificates, limits). Every duration is written like
//! `"30s"` or `"2m"`.

use super::{yes, Config, Site};
use crate::router::{
    protocol::Protocol,
    proxy::{HealthChecks, ProxyConfig, ResponseTimeouts, UpstreamNode},
    server::Limits,
    tls::CertSpec,
    topology::{ExternalUrls, OwaRedirect, Topology},
    version::Version,
};
use ahash::AHashMap;
use anyhow::{bail, Context as _};
use http::{HeaderValue, Uri};
use rustls::pki_types::{pem::PemObject, CertificateDer};
use serde::Deserialize;
use std::{net::SocketAddr, path::PathBuf, time::Duration};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterConfig {
    /// Where HTTPS is served.
    #[serde(default = "default_https")]
    pub https: SocketAddr,
    /// Where plain HTTP (health checks, OWA redirected to https) is served; `""` for none.
    #[serde(default = "default_http", deserialize_with = "optional_addr")]
    pub http: Option<SocketAddr>,
    /// Unix socket through which a restarted `balancer run` takes the listeners over.
    #[serde(default = "default_handover_socket")]
    pub handover_socket: PathBuf,
    /// `link-page` (001's page with the right URL) or `redirect` (silent 302) for OWA (R8).
    #[serde(default)]
    pub owa_redirect: OwaRedirectMode,
    /// Key of the signed affinity cookie (R5): the same on every node, 16 bytes or more.
    pub cookie_secret: String,
    #[serde(default = "yes")]
    pub front_end_header: bool,
    #[serde(default = "yes")]
    pub back_end_header: bool,
    /// Largest Autodiscover request body read to find the `EMailAddress` (R5).
    #[serde(default = "default_autodiscover_body_limit")]
    pub autodiscover_body_limit: usize,
    /// Largest EWS request body read to find the mailboxes it opens (R10).
    #[serde(default = "default_ews_body_limit")]
    pub ews_body_limit: usize,
    /// Names (found or not) whose directory entries the router keeps in memory, each valid
    /// until the next write to the directory (0: a map lookup per request). Read at start.
    #[serde(default = "default_directory_cache")]
    pub directory_cache: usize,
    /// One certificate per site name; the first is the default for unknown SNI.
    pub certificates: Vec<Certificate>,
    #[serde(default)]
    pub upstreams: Upstreams,
    #[serde(default)]
    pub health: HealthChecks,
    /// How long an upstream may take to start its answer, per protocol (R19).
    #[serde(default)]
    pub timeouts: ResponseTimeouts,
    #[serde(default)]
    pub limits: Limits,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OwaRedirectMode {
    #[default]
    LinkPage,
    Redirect,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    pub names: Vec<String>,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Upstreams {
    /// PEM files of the CAs that sign the upstream nodes' certificates (R15).
    pub trust: Vec<PathBuf>,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    pub max_in_flight_per_node: usize,
    /// Idle connections kept open to each node (per origin) for the requests that follow;
    /// beyond it, the least recently used is closed.
    pub max_idle_per_node: usize,
    /// How long a node that refused a connection is left out (passive ejection).
    #[serde(with = "humantime_serde")]
    pub ejection: Duration,
}

impl Default for Upstreams {
    fn default() -> Self {
        Self {
            trust: Vec::new(),
            connect_timeout: Duration::from_secs(3),
            max_in_flight_per_node: 1024,
            max_idle_per_node: 128,
            ejection: Duration::from_secs(10),
        }
    }
}

/// A site's Client Access node or back end, as the router reaches it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    /// The server name the directory uses (`mbx-usa-1`, or a 2003 back end's name).
    pub name: String,
    /// `https://host[:port]`, or `http://` for a 2003 back end (R13).
    pub url: String,
    /// Where to connect (else the URL's host is resolved).
    pub connect: Option<SocketAddr>,
}

fn default_https() -> SocketAddr {
    "[::]:443".parse().expect("an address")
}
fn default_http() -> Option<SocketAddr> {
    Some("[::]:80".parse().expect("an address"))
}
fn default_handover_socket() -> PathBuf {
    PathBuf::from("/run/balancer/handover.sock")
}
fn default_directory_cache() -> usize {
    64 * 1024
}
fn default_autodiscover_body_limit() -> usize {
    4096
}
fn default_ews_body_limit() -> usize {
    64 * 1024
}
fn optional_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(d)?;
    match text.trim() {
        "" => Ok(None),
        addr => addr.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

fn uri(field: &str, text: &str, schemes: &[&str]) -> anyhow::Result<Uri> {
    let uri: Uri = text
        .parse()
        .with_context(|| format!("{field}: {text:?} is not a URL"))?;
    let scheme = uri.scheme_str().unwrap_or("");
    if !schemes.contains(&scheme) || uri.host().is_none() {
        bail!(
            "{field}: {text:?} must be an absolute {} URL",
            schemes.join(" or ")
        );
    }
    Ok(uri)
}

impl Config {
    /// The router's section; `balancer run` needs it.
    pub fn router(&self) -> anyhow::Result<&RouterConfig> {
        self.router
            .as_ref()
            .context("router: missing; `balancer run` needs the [router] section")
    }

    /// Checks the router's fields and the sites' L7 fields.
    pub(super) fn validate_router(&self) -> anyhow::Result<()> {
        for (s, site) in self.sites.iter().enumerate() {
            if let Some(base) = &site.external_url {
                uri(&format!("sites[{s}].external_url"), base, &["https"])?;
            }
            for (n, node) in site.nodes.iter().enumerate() {
                if let Some(url) = &node.internal_url {
                    uri(
                        &format!("sites[{s}].nodes[{n}].internal_url"),
                        url,
                        &["https"],
                    )?;
                }
                for (name, protocol, url) in node.internal_urls.each() {
                    let field = format!("sites[{s}].nodes[{n}].internal_urls.{name}");
                    let parsed = uri(&field, url, &["https"])?;
                    // The request keeps its path: only the origin may differ per directory.
                    let path = parsed.path();
                    if path != "/" && Protocol::of_path(path) != protocol {
                        bail!("{field}: {url:?}: the path must be the virtual directory's (or none); requests keep their own path, only the scheme, host and port are taken");
                    }
                }
            }
            let scheme: &[&str] = match site.version {
                Version::Exchange2003 => &["http"],
                _ => &["https"],
            };
            for (b, backend) in site.backends.iter().enumerate() {
                uri(
                    &format!("sites[{s}].backends[{b}].url"),
                    &backend.url,
                    scheme,
                )?;
            }
        }
        let Some(router) = &self.router else {
            return Ok(());
        };
        if router.cookie_secret.len() < 16 {
            bail!(
                "router.cookie_secret: {} bytes; use 16 or more, the same on every node",
                router.cookie_secret.len()
            );
        }
        if router.certificates.is_empty() {
            bail!("router.certificates: empty; configure one certificate per site name");
        }
        for (c, cert) in router.certificates.iter().enumerate() {
            if cert.names.is_empty() {
                bail!("router.certificates[{c}].names: empty; list the SNI names it serves");
            }
        }
        if self.site().backends.is_empty() {
            bail!("sites[{}].backends: empty; this node's site needs a back end to serve its own mailboxes (R7)", self.node.site);
        }
        let h = &router.health;
        if h.rise == 0 || h.fall == 0 {
            bail!("router.health: rise and fall must be at least 1");
        }
        if !h.path.starts_with('/') {
            bail!("router.health.path: {:?} must start with /", h.path);
        }
        if router.limits.max_connections == 0 {
            bail!("router.limits.max_connections: must be at least 1");
        }
        self.validate_peer_check_listener(router)
    }

    /// The array's peers check this node's health on its underlay address
    /// (`dataplane.peer_checks`): the plain-HTTP listener must answer there.
    fn validate_peer_check_listener(&self, router: &RouterConfig) -> anyhow::Result<()> {
        let checks = &self.dataplane.peer_checks;
        if !checks.enabled || self.site().nodes.len() < 2 {
            return Ok(());
        }
        let me = self.this_node();
        let Some(http) = router.http else {
            bail!("router.http: \"\" (off), but the array's peers check this node over plain HTTP (dataplane.peer_checks); listen on [::]:{} or set dataplane.peer_checks.enabled = false", checks.port);
        };
        let underlay: Vec<std::net::IpAddr> = me
            .underlay_v4
            .map(Into::into)
            .into_iter()
            .chain(me.underlay_v6.map(Into::into))
            .collect();
        let reachable = http.ip().is_unspecified() || underlay.contains(&http.ip());
        if http.port() != checks.port || !reachable {
            bail!("router.http: {http} does not answer where the array's peers check this node (port {} of its underlay address, dataplane.peer_checks); listen on [::]:{} or change dataplane.peer_checks.port", checks.port, checks.port);
        }
        Ok(())
    }

    /// The organisation as the decision sees it.
    pub fn topology(&self) -> Topology {
        let owa_redirect = match self.router.as_ref().map(|r| r.owa_redirect) {
            Some(OwaRedirectMode::Redirect) => OwaRedirect::Found,
            _ => OwaRedirect::LinkPage,
        };
        Topology {
            sites: self.sites.iter().map(Site::l7).collect(),
            this_site: self.node.site.clone(),
            owa_redirect,
        }
    }

    pub fn cert_specs(&self) -> anyhow::Result<Vec<CertSpec>> {
        Ok(self
            .router()?
            .certificates
            .iter()
            .map(|c| CertSpec {
                names: c.names.clone(),
                cert: c.cert.clone(),
                key: c.key.clone(),
            })
            .collect())
    }

    pub fn limits(&self) -> anyhow::Result<Limits> {
        Ok(self.router()?.limits.clone())
    }

    /// The proxy's upstreams: this site's back ends (R7), the other sites' Client Access
    /// nodes by their InternalURL (R8-R11), and the 2003 back ends by server name (R13).
    pub fn proxy_config(&self) -> anyhow::Result<ProxyConfig> {
        let router = self.router()?;
        let backend = |b: &Backend| UpstreamNode {
            name: b.name.clone(),
            base: b.url.parse().expect("validated"),
            addrs: b.connect.into_iter().collect(),
            vdir_bases: Vec::new(),
        };
        let mut sites = AHashMap::new();
        let mut legacy = AHashMap::new();
        for site in &self.sites {
            if site.version.is_legacy() {
                legacy.extend(site.backends.iter().map(|b| (b.name.clone(), backend(b))));
            } else if site.name != self.node.site {
                let nodes: Vec<UpstreamNode> = site
                    .nodes
                    .iter()
                    .filter_map(|n| {
                        Some(UpstreamNode {
                            name: n.name.clone(),
                            base: n.internal_url.as_ref()?.parse().expect("validated"),
                            addrs: n.connect.into_iter().collect(),
                            vdir_bases: n
                                .internal_urls
                                .each()
                                .map(|(_, protocol, url)| {
                                    (protocol, url.parse().expect("validated"))
                                })
                                .collect(),
                        })
                    })
                    .collect();
                sites.insert(site.name.clone(), nodes);
            }
        }
        let mut trust = rustls::RootCertStore::empty();
        for path in &router.upstreams.trust {
            let field = || format!("router.upstreams.trust: {}", path.display());
            for cert in CertificateDer::pem_file_iter(path).with_context(field)? {
                trust.add(cert.with_context(field)?).with_context(field)?;
            }
        }
        Ok(ProxyConfig {
            node_name: HeaderValue::from_str(&self.node.name)
                .context("node.name: not usable as a header value")?,
            local: self.site().backends.iter().map(backend).collect(),
            sites,
            legacy,
            trust,
            max_in_flight_per_node: router.upstreams.max_in_flight_per_node,
            max_idle_per_node: router.upstreams.max_idle_per_node,
            connect_timeout: router.upstreams.connect_timeout,
            ejection: router.upstreams.ejection,
            back_end_header: router.back_end_header,
            health: router.health.clone(),
            timeouts: router.timeouts.clone(),
        })
    }
}

impl Site {
    fn l7(&self) -> crate::router::topology::Site {
        let mut external = self
            .external_url
            .as_deref()
            .map(ExternalUrls::from_base)
            .unwrap_or_default();
        let o = &self.external_urls;
        for (slot, url) in [
            (&mut external.owa, &o.owa),
            (&mut external.activesync, &o.activesync),
            (&mut external.ews, &o.ews),
            (&mut external.autodiscover, &o.autodiscover),
            (&mut external.oab, &o.oab),
        ] {
            if url.is_some() {
                slot.clone_from(url);
            }
        }
        crate::router::topology::Site {
            name: self.name.clone(),
            version: self.version,
            external,
            redirect_enabled: self.redirect,
        }
    }
}

/// Per-virtual-directory URLs that differ from the default ones (a site's ExternalURLs under
/// `external_url`, a node's InternalURLs under `internal_url`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VdirUrls {
    pub owa: Option<String>,
    pub activesync: Option<String>,
    pub ews: Option<String>,
    pub autodiscover: Option<String>,
    pub oab: Option<String>,
}

impl VdirUrls {
    /// Each set URL with its field name and its protocol.
    fn each(&self) -> impl Iterator<Item = (&'static str, Protocol, &String)> {
        [
            ("owa", Protocol::Owa, &self.owa),
            ("activesync", Protocol::ActiveSync, &self.activesync),
            ("ews", Protocol::Ews, &self.ews),
            ("autodiscover", Protocol::Autodiscover, &self.autodiscover),
            ("oab", Protocol::Oab, &self.oab),
        ]
        .into_iter()
        .filter_map(|(name, protocol, url)| Some((name, protocol, url.as_ref()?)))
    }
}
