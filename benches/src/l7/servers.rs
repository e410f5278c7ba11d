//! The servers of the L7 bench, their configurations and addresses (started, pinned, waited
//! for and stopped by [`crate::servers`]):
//! - the upstreams: nginx serving a fixed answer over HTTPS, one standing for this site's
//!   mailbox back end, one for a Client Access node of another site (the proxied path);
//! - the three TLS-terminating reverse proxies to it, same certificate, one worker each:
//!   `balancer run`, nginx, HAProxy.

use crate::servers::{Launcher, Server};
use std::{path::Path, time::Duration};

/// Where the servers listen (loopback of the bench namespace).
pub const UPSTREAM: &str = "127.0.0.1:18443";
pub const UPSTREAM_NAME: &str = "mbx-usa-1.contoso.internal";
/// The node of the site without ExternalURL that the router proxies to (R8).
pub const REMOTE: &str = "127.0.0.1:18446";
pub const REMOTE_NAME: &str = "asia-1.contoso.internal";
/// Where the upstream passes RPC over HTTP (`/rpc/`) on to: the streaming sink.
pub const SINK: &str = "127.0.0.1:18450";
pub const FRONT_NAME: &str = "www.usa.contoso.com";
/// A mailbox of that site, and one of a site the router redirects to (R8, `contoso` lab).
pub const REMOTE_MAILBOX: &str = "carol@contoso.com";
pub const REDIRECTED_MAILBOX: &str = "bob@contoso.com";
/// HAProxy's `maxconn` (see [`Launcher::haproxy`]).
pub const HAPROXY_MAX_CONNECTIONS: usize = 9_990;
/// Where OWA users of [`REDIRECTED_MAILBOX`] are sent (the peers are told the same).
pub const REDIRECT_TO: &str = "https://www.europe.contoso.com/owa/";

/// The router's order of cipher suites (`balancer_user::router::tls::suites`) in OpenSSL's
/// names, given to nginx and HAProxy with the server's order in force, so that every proxy
/// negotiates the same suite with the generators ([`super::suites`] checks it), and to the
/// upstreams, so that every proxy's upstream connections do too: TLS 1.3's, then TLS 1.2's.
pub const TLS13_SUITES: &str =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";
pub const TLS12_SUITES: &str = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:\
     ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:\
     ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

/// The L7 section's servers, each started by [`Launcher::start`].
impl Launcher<'_> {
    /// nginx with `conf` (written to `<name>.conf`), in the foreground.
    /// Under callgrind, nginx runs as one process (`master_process off`): the counts are
    /// those of the process that serves.
    fn nginx(&self, name: &'static str, addr: &str, conf: &str) -> anyhow::Result<Server> {
        let path = self.file(&format!("{name}.conf"));
        let conf = match self.callgrind {
            true => format!("master_process off;\n{conf}"),
            false => conf.to_string(),
        };
        crate::provenance::write_config(&path, &conf)?;
        let mut cmd = self.command("nginx");
        cmd.arg("-c").arg(&path).args(["-e", "stderr"]);
        self.start(name, addr, cmd)
    }

    /// An upstream: a fixed 2-byte answer over HTTPS with the certificate `<name>.pem`, except
    /// for RPC over HTTP (`/rpc/`), streamed on to the [`SINK`] that answers once it has read
    /// the whole body (see `sink.rs`).
    pub fn upstream(&self, name: &'static str, addr: &str) -> anyhow::Result<Server> {
        let dir = self.dir.display();
        let conf = format!(
            "worker_processes 1;\ndaemon off;\npid {dir}/{name}.pid;\nworker_rlimit_nofile 20000;\n\
             events {{ worker_connections 30000; }}\n\
             http {{\n  access_log off;\n  keepalive_requests 1000000;\n  client_max_body_size 0;\n\
               server {{\n    listen {addr} ssl;\n    ssl_certificate {dir}/{name}.pem;\n    ssl_certificate_key {dir}/{name}.key;\n\
                 ssl_prefer_server_ciphers on;\n    ssl_ciphers {TLS12_SUITES};\n\
                 location / {{ return 200 \"ok\"; }}\n\
                 location /rpc/ {{ proxy_pass http://{SINK}; proxy_http_version 1.1; proxy_request_buffering off; }}\n  }}\n}}\n"
        );
        self.nginx(name, addr, &conf)
    }

    /// nginx as the TLS-terminating reverse proxy (HTTP/1.1 and HTTP/2), upstream connections
    /// kept alive and verified against the CA, request bodies streamed (not spooled to disk,
    /// as RPC over HTTP needs), and the redirect of [`REDIRECTED_MAILBOX`] as a static rule.
    /// TLS 1.2 and 1.3, as the router and HAProxy offer (nginx 1.22's default stops at 1.2,
    /// whose resumed handshakes skip the key exchange that 1.3's still make). Accept deferred
    /// until the ClientHello is in, as the router's and HAProxy's listeners.
    pub fn nginx_proxy(&self, addr: &str) -> anyhow::Result<Server> {
        let dir = self.dir.display();
        let conf = format!(
            "worker_processes 1;\ndaemon off;\npid {dir}/nginx.pid;\nworker_rlimit_nofile 20000;\n\
             events {{ worker_connections 30000; }}\n\
             http {{\n  access_log off;\n  keepalive_requests 1000000;\n  keepalive_timeout 300s;\n\
               client_max_body_size 0;\n  proxy_request_buffering off;\n\
               upstream backend {{ server {UPSTREAM}; keepalive 128; }}\n\
               server {{\n    listen {addr} ssl http2 deferred;\n    ssl_certificate {dir}/front.pem;\n    ssl_certificate_key {dir}/front.key;\n\
                 ssl_protocols TLSv1.2 TLSv1.3;\n    ssl_prefer_server_ciphers on;\n\
                 ssl_ciphers {TLS12_SUITES};\n    ssl_conf_command Ciphersuites {TLS13_SUITES};\n\
                 ssl_conf_command Options PrioritizeChaCha;\n\
                 location / {{\n      if ($http_x_anchormailbox = \"{REDIRECTED_MAILBOX}\") {{ return 302 {REDIRECT_TO}; }}\n\
                   proxy_pass https://backend;\n      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n\
                   proxy_ssl_server_name on;\n      proxy_ssl_name {UPSTREAM_NAME};\n      proxy_ssl_verify on;\n\
                   proxy_ssl_trusted_certificate {dir}/ca.pem;\n      proxy_ssl_session_reuse on;\n    }}\n  }}\n}}\n"
        );
        self.nginx("nginx", addr, &conf)
    }

    /// HAProxy as the TLS-terminating reverse proxy, one thread, connections to the upstream
    /// reused (and kept while idle, as nginx's `keepalive` and the router keep theirs: by
    /// default HAProxy closes half of them every 5 s) and verified against the CA, and the
    /// redirect of [`REDIRECTED_MAILBOX`] as a static rule; accept deferred, as the router's and
    /// nginx's listeners. It reserves two descriptors per
    /// connection: under this box's hard limit of 20,000 open files,
    /// [`HAPROXY_MAX_CONNECTIONS`] is the most it accepts.
    pub fn haproxy(&self, addr: &str) -> anyhow::Result<Server> {
        let dir = self.dir.display();
        let pem = std::fs::read_to_string(self.file("front.pem"))?
            + &std::fs::read_to_string(self.file("front.key"))?;
        std::fs::write(self.file("haproxy-front.pem"), pem)?;
        // Valgrind keeps a few descriptors for itself: HAProxy could not raise its limit.
        let limits = match self.callgrind {
            true => "maxconn 1000".to_string(),
            false => format!("maxconn {HAPROXY_MAX_CONNECTIONS}\n  ulimit-n 20000"),
        };
        let conf = format!(
            "global\n  nbthread 1\n  {limits}\n\
             defaults\n  mode http\n  timeout connect 5s\n  timeout client 300s\n  timeout server 300s\n  timeout http-keep-alive 300s\n  http-reuse always\n\
             frontend fe\n  bind {addr} ssl crt {dir}/haproxy-front.pem alpn h2,http/1.1 ciphers {TLS12_SUITES} ciphersuites {TLS13_SUITES} defer-accept\n\
               http-request redirect location {REDIRECT_TO} code 302 if {{ req.hdr(x-anchormailbox) -m str {REDIRECTED_MAILBOX} }}\n  default_backend be\n\
             backend be\n  server s1 {UPSTREAM} ssl verify required ca-file {dir}/ca.pem sni str({UPSTREAM_NAME}) alpn http/1.1 pool-purge-delay 300s\n"
        );
        let path = self.file("haproxy.cfg");
        crate::provenance::write_config(&path, &conf)?;
        let mut cmd = self.command("haproxy");
        cmd.arg("-db").arg("-f").arg(&path);
        self.start("haproxy", addr, cmd)
    }

    /// `balancer run` with the router alone on `addr` (its data plane attached to the
    /// namespace's `interface`, its maps pinned under `pin_dir`), one worker thread like the
    /// peers; with `busy_poll`, its `--busy-poll` window.
    pub fn balancer(
        &self,
        binary: &Path,
        addr: &str,
        interface: &str,
        pin_dir: &Path,
        busy_poll: Option<Duration>,
    ) -> anyhow::Result<Server> {
        let dir = self.dir.display();
        let conf = format!(
            r#"[node]
site = "usa"
name = "usa-1"
[dataplane]
interfaces = ["{interface}"]
xdp_mode = "native"
pin_dir = "{pin}"
ring_size = 4099
directory_entries = 1024
[[dataplane.vips]]
address = "10.200.0.10"
[router]
https = "{addr}"
http = ""
handover_socket = "{dir}/handover.sock"
cookie_secret = "bench-cookie-secret-0123456789"
owa_redirect = "redirect"
[[router.certificates]]
names = ["{FRONT_NAME}"]
cert = "{dir}/front.pem"
key = "{dir}/front.key"
[router.upstreams]
trust = ["{dir}/ca.pem"]
max_in_flight_per_node = 100000
[router.health]
interval = "5s"
[router.limits]
max_connections = 30000
header_read_timeout = "300s"
h2_idle_timeout = "300s"
max_h2_streams = 1000
[[sites]]
name = "usa"
version = "2010"
external_url = "https://{FRONT_NAME}"
[[sites.nodes]]
id = 1
name = "usa-1"
underlay_v4 = "10.99.0.1"
[[sites.backends]]
name = "mbx-usa-1"
url = "https://{UPSTREAM_NAME}"
connect = "{UPSTREAM}"
[[sites]]
name = "europe"
version = "2007sp1"
external_url = "https://www.europe.contoso.com"
[[sites.nodes]]
id = 1
name = "europe-1"
internal_url = "https://europe-1.contoso.internal"
connect = "127.0.0.1:18447"
[[sites]]
name = "asia"
version = "2007sp1"
[[sites.nodes]]
id = 1
name = "asia-1"
internal_url = "https://{REMOTE_NAME}"
connect = "{REMOTE}"
[directory]
file = "{dir}/mailboxes.csv"
"#,
            pin = pin_dir.display(),
        );
        let path = self.file("balancer.toml");
        crate::provenance::write_config(&path, &conf)?;
        std::fs::write(
            self.file("mailboxes.csv"),
            balancer_tests::contoso::topology::MAILBOXES,
        )?;
        let mut cmd = self.command(&binary.display().to_string());
        cmd.arg("run")
            .arg("--config")
            .arg(&path)
            .arg("--workers")
            .arg("1")
            .env("RUST_LOG", "warn");
        if let Some(window) = busy_poll {
            cmd.arg("--busy-poll")
                .arg(humantime::format_duration(window).to_string());
        }
        self.start("balancer", addr, cmd)
    }
}
