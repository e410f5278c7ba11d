//! The cipher suite each proxy negotiates with the load generators' TLS library (OpenSSL, whose
//! own order puts AES-256-GCM first). It must be the same for every proxy, or the comparison
//! would be of suites as much as of proxies: the router prefers AES-128-GCM, and nginx and
//! HAProxy are given the same order ([`super::servers::TLS13_SUITES`]).

use super::servers::FRONT_NAME;
use crate::servers::{Launcher, Server};
use anyhow::{bail, Context as _};
use std::process::Stdio;

/// The suite `openssl s_client` gets from every one of `servers`; fails unless all agree.
pub fn same_for_all(servers: &[Server], generator: &Launcher) -> anyhow::Result<String> {
    let seen = servers
        .iter()
        .map(|server| Ok((server.name, negotiated(server, generator)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let Some((_, first)) = seen.first() else {
        bail!("no proxy to ask")
    };
    if seen.iter().any(|(_, suite)| suite != first) {
        bail!("the proxies negotiate different cipher suites with OpenSSL: {seen:?}");
    }
    Ok(first.clone())
}

fn negotiated(server: &Server, generator: &Launcher) -> anyhow::Result<String> {
    let mut cmd = generator.prefix();
    cmd.args(["openssl", "s_client", "-brief", "-servername", FRONT_NAME])
        .arg("-connect")
        .arg(server.addr.to_string())
        .stdin(Stdio::null());
    crate::provenance::command(&cmd);
    let out = cmd.output().context("running openssl s_client")?;
    let text = String::from_utf8_lossy(&out.stderr) + String::from_utf8_lossy(&out.stdout);
    suite(&text).with_context(|| format!("openssl s_client to {}: {text}", server.name))
}

/// The `Ciphersuite:` line of `openssl s_client -brief`.
fn suite(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Ciphersuite: "))
        .map(|s| s.trim().to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_suite_is_read_from_s_clients_brief_output() {
        let text = "CONNECTION ESTABLISHED\nProtocol version: TLSv1.3\n\
                    Ciphersuite: TLS_AES_128_GCM_SHA256\nPeer certificate: CN = x\nDONE\n";
        assert_eq!(
            super::suite(text).as_deref(),
            Some("TLS_AES_128_GCM_SHA256")
        );
        assert_eq!(super::suite("connect: Connection refused\n"), None);
    }
}
