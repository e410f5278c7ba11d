//! Lab clients: TCP connections from chosen source addresses inside the client namespace.

use anyhow::Context as _;
use socket2::{Domain, Socket, Type};
use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{IpAddr, SocketAddr, TcpStream},
    time::Duration,
};

use crate::netns::Netns;

const TIMEOUT: Duration = Duration::from_secs(5);

/// Opens a connection from `source` (port chosen by the kernel) to `target`. Must run on a
/// thread inside the client namespace.
pub fn connect_from(source: IpAddr, target: SocketAddr) -> anyhow::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(target), Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(source, 0).into())?;
    socket
        .connect_timeout(&target.into(), TIMEOUT)
        .with_context(|| format!("{source} -> {target}"))?;
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Reads the server's greeting: the name of the node that accepted the connection.
pub fn served_by(stream: &mut TcpStream) -> anyhow::Result<String> {
    let mut line = String::new();
    BufReader::new(stream.try_clone()?).read_line(&mut line)?;
    anyhow::ensure!(line.ends_with('\n'), "no greeting (got {line:?})");
    Ok(line.trim_end().to_string())
}

/// One connection per source: which node served each, in order.
pub fn who_serves(
    ns: &Netns,
    sources: &[IpAddr],
    target: SocketAddr,
) -> anyhow::Result<Vec<anyhow::Result<String>>> {
    ns.run_in(|| {
        sources
            .iter()
            .map(|s| {
                let mut stream = connect_from(*s, target)?;
                served_by(&mut stream)
            })
            .collect()
    })
}

/// Sends `payload` and checks that the same bytes come back.
pub fn echo(stream: &mut TcpStream, payload: &[u8]) -> anyhow::Result<()> {
    stream.write_all(payload)?;
    let mut back = vec![0u8; payload.len()];
    stream.read_exact(&mut back)?;
    anyhow::ensure!(back == payload, "echo differs");
    Ok(())
}
