//! Requests from the lab's client namespace, with curl: a chosen source address, the site's
//! host name resolved to its VIP, the lab CA trusted, and what the answer says about who
//! served it (R20's headers).

use super::{topology, Lab};
use std::net::{IpAddr, Ipv4Addr};

/// Client source addresses in the client namespace.
pub const CLIENTS: u32 = 16;

/// The i-th client address (1-based): 10.10.0.<i>.
pub fn client(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 10, 0, i as u8))
}

/// One request.
#[derive(Debug, Clone)]
pub struct Request {
    pub client: IpAddr,
    /// The site whose external host name (and VIP) is asked.
    pub site: &'static str,
    /// `https` or `http`.
    pub scheme: &'static str,
    pub method: &'static str,
    pub path: String,
    pub headers: Vec<String>,
    /// Basic credentials, `user:password`.
    pub user: Option<&'static str>,
    pub body: Option<String>,
}

impl Request {
    pub fn get(client: IpAddr, site: &'static str, path: &str) -> Self {
        Self {
            client,
            site,
            scheme: "https",
            method: "GET",
            path: path.to_string(),
            headers: Vec::new(),
            user: None,
            body: None,
        }
    }

    pub fn method(mut self, method: &'static str) -> Self {
        self.method = method;
        self
    }

    pub fn user(mut self, user: &'static str) -> Self {
        self.user = Some(user);
        self
    }

    pub fn header(mut self, header: &str) -> Self {
        self.headers.push(header.to_string());
        self
    }

    pub fn body(mut self, body: &str) -> Self {
        self.body = Some(body.to_string());
        self
    }

    pub fn plain(mut self) -> Self {
        self.scheme = "http";
        self
    }
}

/// What came back.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    pub status: u16,
    /// `x-balancer-front-end`: the node that answered.
    pub front: String,
    /// `x-balancer-back-end`: the upstream it went to (empty if the router answered itself).
    pub back: String,
    pub location: String,
    pub ms_location: String,
    pub body: String,
}

/// The fields written after the body, one per line.
const WRITE_OUT: &str = "\n%{http_code}\n%header{x-balancer-front-end}\n%header{x-balancer-back-end}\n%header{location}\n%header{x-ms-location}";

impl Lab {
    /// Sends `request` with curl from the client namespace; `Err` is curl's own failure.
    pub fn send(&self, request: &Request) -> Result<Reply, String> {
        let site = topology::site(request.site);
        let host = site.external_host.unwrap_or("internal");
        let port = if request.scheme == "https" { 443 } else { 80 };
        let mut cmd = self.command("client", "curl");
        cmd.args(["-sS", "--max-time", "10", "--cacert"])
            .arg(self.dir.join("ca.pem"))
            .args(["--interface", &request.client.to_string()])
            .args(["--resolve", &format!("{host}:{port}:{}", site.vip)])
            .args(["-X", request.method, "-w", WRITE_OUT]);
        for h in &request.headers {
            cmd.args(["-H", h]);
        }
        if let Some(user) = request.user {
            cmd.args(["-u", user]);
        }
        if let Some(body) = &request.body {
            cmd.args(["-H", "Content-Type: text/xml", "--data-binary", body]);
        }
        cmd.arg(format!("{}://{host}{}", request.scheme, request.path));
        let out = cmd.output().map_err(|e| e.to_string())?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        let mut fields = stdout.rsplitn(6, '\n');
        let mut next = || fields.next().unwrap_or_default().trim().to_string();
        let (ms_location, location, back, front, status) = (next(), next(), next(), next(), next());
        Ok(Reply {
            status: status.parse().unwrap_or(0),
            front,
            back,
            location,
            ms_location,
            body: next(),
        })
    }
}
