//! Memory while a large request body streams through (RPC over HTTP's RPC_IN_DATA, R19):
//! curl uploads a sparse file over HTTP/1.1 to a proxy, which passes it on to the upstream as
//! it comes; the proxy's resident memory is sampled every 20 ms and the peak kept, and its
//! CPU time counted. The answer comes from the [`super::sink`] once it has read the whole
//! body, and must say so (`bytes=<length>`): every proxy carried all of it.

use super::servers::FRONT_NAME;
use crate::servers::{Launcher, Server};
use anyhow::{ensure, Context as _};
use std::{path::Path, process::Stdio, time::Duration};

/// What one upload measured.
pub struct Streamed {
    pub peak_rss_kib: u64,
    pub mib_per_s: f64,
    /// CPU time of the proxy's processes per GiB carried.
    pub cpu_s_per_gib: f64,
}

/// A sparse file of `bytes` in `dir` (reading it costs no disk).
pub fn body_file(dir: &Path, bytes: u64) -> anyhow::Result<std::path::PathBuf> {
    let path = dir.join("rpc-in-data.body");
    std::fs::File::create(&path)?.set_len(bytes)?;
    Ok(path)
}

/// `runs` uploads of `body` through `server`: the median speed and CPU per GiB, the highest
/// peak of memory.
pub fn uploads(
    server: &Server,
    generator: &Launcher,
    body: &Path,
    ca: &Path,
    runs: usize,
) -> anyhow::Result<Streamed> {
    let all = (0..runs.max(1))
        .map(|_| upload(server, generator, body, ca))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let median =
        |figure: fn(&Streamed) -> f64| super::load::median(all.iter().map(figure).collect());
    Ok(Streamed {
        peak_rss_kib: all.iter().map(|s| s.peak_rss_kib).max().unwrap_or(0),
        mib_per_s: median(|s| s.mib_per_s),
        cpu_s_per_gib: median(|s| s.cpu_s_per_gib),
    })
}

/// Uploads `body` through `server` with `RPC_IN_DATA` and its length, certificate checked.
fn upload(
    server: &Server,
    generator: &Launcher,
    body: &Path,
    ca: &Path,
) -> anyhow::Result<Streamed> {
    let port = server.addr.port();
    let length = std::fs::metadata(body)?.len();
    let answer = body.with_extension(format!("{}.answer", server.name));
    let mut curl = generator.prefix();
    curl.args(["curl", "-sS", "--http1.1", "-X", "RPC_IN_DATA", "-o"])
        .arg(&answer)
        .args(["-w", "%{http_code} %{speed_upload}"])
        .arg("--cacert")
        .arg(ca)
        .arg("--resolve")
        .arg(format!("{FRONT_NAME}:{port}:{}", server.addr.ip()))
        .arg("-T")
        .arg(body)
        .arg(format!(
            "https://{FRONT_NAME}:{port}/rpc/rpcproxy.dll?mbx-usa-1.contoso.internal:6001"
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let cpu_before = server.cpu_seconds();
    crate::provenance::command(&curl);
    let mut child = curl.spawn().context("running curl")?;
    let mut peak_rss_kib = 0;
    while child.try_wait()?.is_none() {
        peak_rss_kib = peak_rss_kib.max(server.rss_kib());
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output()?;
    let cpu_s = (server.cpu_seconds() - cpu_before).max(0.0);
    let text = String::from_utf8_lossy(&out.stdout);
    let mut fields = text.split_whitespace();
    let status = fields.next().unwrap_or_default();
    let bytes_per_s: f64 = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0.0);
    ensure!(
        out.status.success() && status == "200" && bytes_per_s > 0.0,
        "{}: streaming a body failed: {text} {}",
        server.name,
        String::from_utf8_lossy(&out.stderr)
    );
    let said = std::fs::read_to_string(&answer).unwrap_or_default();
    ensure!(
        said.ends_with(&format!(" bytes={length}")),
        "{}: the sink did not get the whole body of {length} bytes: {said:?}",
        server.name
    );
    Ok(Streamed {
        peak_rss_kib,
        mib_per_s: bytes_per_s / (1024.0 * 1024.0),
        cpu_s_per_gib: cpu_s / (length as f64 / f64::from(1u32 << 30)),
    })
}
