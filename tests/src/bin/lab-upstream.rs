//! `lab-upstream`: the Contoso lab's stand-in back ends (mailbox servers over HTTPS, the 2003
//! back end over HTTP) as processes, so that `cargo xtask lab up` leaves them running. Each
//! answers `<name> <path> fwd=... via=... bytes=...` until killed.

use anyhow::Context as _;
use clap::Parser;
use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use std::{net::SocketAddr, path::PathBuf};

#[derive(Parser)]
struct Args {
    /// The name it answers with (the directory's server name).
    #[arg(long)]
    name: String,
    #[arg(long)]
    listen: SocketAddr,
    /// PEM certificate chain: serve HTTPS (else plain HTTP).
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    #[arg(long)]
    key: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tls = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => Some((
            CertificateDer::pem_file_iter(cert)
                .with_context(|| format!("{}", cert.display()))?
                .collect::<Result<Vec<_>, _>>()?,
            PrivateKeyDer::from_pem_file(key).with_context(|| format!("{}", key.display()))?,
        )),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let _server = balancer_tests::upstream::upstream_on(&args.name, tls, listener);
    tokio::signal::ctrl_c().await?;
    Ok(())
}
