//! The training run of the router's profile-guided build (`cargo xtask build --release --pgo`):
//! an instrumented `balancer run` alone in the bench's [`Bed`], through which every kind of
//! request the bench sends goes once (short runs: a profile needs the paths' proportions, not
//! precise figures), plus ActiveSync and EWS requests, which the bench does not time, so that
//! their paths are not left out of the profile as cold. The profile is written when the router
//! exits, on the SIGTERM that stopping a [`crate::servers::Server`] sends.

use super::{in_bed, load, run_case, stream, Bed, Case, Plan, OURS};
use std::path::Path;

/// The paced loads' rate: well within what one core carries.
const PACED_RATE: u32 = 2_000;
/// The upload's size.
const UPLOAD_BYTES: u64 = 64 << 20;

/// Runs the training workload through `balancer` (built with `-Cprofile-generate`; where its
/// profile goes is `LLVM_PROFILE_FILE` in this process's environment, which it inherits).
pub fn train(balancer: &Path) -> anyhow::Result<()> {
    let plan = Plan::new(true);
    in_bed(|bed| {
        let Bed {
            dir,
            pin_dir,
            launcher,
            generator,
            ..
        } = bed;
        let router = launcher.balancer(balancer, OURS, "bl0", pin_dir, None)?;
        let cases = [
            Case::KeepAlive,
            Case::Handshake,
            Case::H2,
            Case::Redirect,
            Case::Proxied,
            Case::H1AtRate(PACED_RATE),
            Case::H2AtRate(PACED_RATE),
        ];
        for case in cases {
            let load = run_case(case, &router, generator, &plan, dir)?;
            eprintln!("bench: trained on {case:?}: {} requests", load.requests);
        }
        let base = format!("https://{}", router.addr);
        let local = "alice@contoso.com";
        let others = [
            format!(
                "{base}/Microsoft-Server-ActiveSync?Cmd=Sync&User={local}&DeviceId=TRAIN1&DeviceType=iPhone"
            ),
            format!("{base}/EWS/Exchange.asmx"),
        ];
        let anchor = format!("X-AnchorMailbox: {local}");
        for url in &others {
            let load = load::wrk(
                &mut generator.prefix(),
                url,
                plan.keepalive,
                &[&anchor],
                dir,
            )?;
            eprintln!("bench: trained on {url}: {} requests", load.requests);
        }
        let body = stream::body_file(dir, UPLOAD_BYTES)?;
        stream::uploads(&router, generator, &body, &dir.join("ca.pem"), 1)?;
        eprintln!(
            "bench: trained on an upload; stopping the router (its profile is written as it exits)"
        );
        drop(router);
        Ok(())
    })
}
