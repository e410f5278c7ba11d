//! The Contoso lab, driven from the command line (`cargo xtask demo`, `cargo xtask lab ...`):
//! - `contoso demo`: brings the lab up, sends a request per case of MISSION.md with curl,
//!   prints a table (client, node that served it, upstream, status, what the rule expects),
//!   fails a node of each kind (an array node, an internal site's node) and checks that only
//!   its clients move, then takes the lab down. Exit 0 only if every row is right.
//! - `contoso up | down | status`: keeps the same lab running to explore.

use balancer_tests::contoso::{
    requests::{client, Reply, Request, CLIENTS},
    topology, Lab,
};
use clap::{Parser, Subcommand};
use std::{net::IpAddr, process::ExitCode};

const PREFIX_DEMO: &str = "demo";
const PREFIX_LAB: &str = "contoso";

#[derive(Parser)]
struct Args {
    /// Name prefix of the lab's namespaces, pins and files (`demo` for the demo).
    #[arg(long, global = true)]
    prefix: Option<String>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Up, every case checked, node failures, down.
    Demo,
    /// Bring the lab up and leave it running.
    Up,
    /// Take the lab down.
    Down,
    /// What is running.
    Status,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let prefix = |default: &str| args.prefix.clone().unwrap_or_else(|| default.to_string());
    let result = match args.command {
        Cmd::Demo => demo(&prefix(PREFIX_DEMO)),
        Cmd::Up => up(&prefix(PREFIX_LAB)),
        Cmd::Down => Lab::handle(&prefix(PREFIX_LAB)).map(|mut lab| {
            lab.down();
            println!("lab down");
            true
        }),
        Cmd::Status => status(&prefix(PREFIX_LAB)),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("contoso: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn up(prefix: &str) -> anyhow::Result<bool> {
    let lab = Lab::up(prefix)?;
    let ns = |s: &str| lab.ns(s);
    println!("the Contoso lab is up; files in {}", lab.dir.display());
    println!("\ntry, from the client namespace:");
    println!(
        "  nsenter --net=/run/netns/{} curl --cacert {}/ca.pem --resolve www.usa.contoso.com:443:10.200.0.10 -u 'CONTOSO\\bob:pw' https://www.usa.contoso.com/owa/",
        ns("client"),
        lab.dir.display()
    );
    println!(
        "  {} status --config {}",
        lab.balancer().display(),
        lab.config_path("usa-1").display()
    );
    println!(
        "  bpftool map dump pinned {}/DIRECTORY",
        lab.pin_dir("usa-1").display()
    );
    println!(
        "\nlogs: {}/<node>.log; take it down with `cargo xtask lab down`",
        lab.dir.display()
    );
    lab.keep();
    Ok(true)
}

fn status(prefix: &str) -> anyhow::Result<bool> {
    let lab = Lab::handle(prefix)?;
    let namespaces = lab.namespaces();
    if namespaces.is_empty() {
        println!("the lab is down");
        return Ok(true);
    }
    println!("namespaces: {}", namespaces.join(" "));
    println!("\n{:<12} state", "process");
    for (name, running) in lab.processes() {
        println!("{name:<12} {}", if running { "running" } else { "gone" });
    }
    for site in &topology::SITES {
        for node in site.node_names() {
            match lab.up_members(&node) {
                Ok(up) => println!("{node}: table members up {up:?}"),
                Err(e) => println!("{node}: {e:#}"),
            }
        }
    }
    Ok(true)
}

/// One case: a request and what MISSION.md says of its answer.
struct Case {
    rule: &'static str,
    what: &'static str,
    request: Request,
    expect: &'static str,
    check: fn(&Reply) -> bool,
}

fn starts(r: &Reply, prefix: &str) -> bool {
    r.body.starts_with(prefix)
}

fn cases() -> Vec<Case> {
    let c = |i| client(i);
    vec![
        Case {
            rule: "R7",
            what: "OWA, usa mailbox (CONTOSO\\alice) at usa",
            request: Request::get(c(1), "usa", "/owa/").user("CONTOSO\\alice:pw"),
            expect: "200 from mbx-usa-1",
            check: |r| r.status == 200 && r.back == "mbx-usa-1" && starts(r, "mbx-usa-1 /owa/"),
        },
        Case {
            rule: "R8",
            what: "OWA, europe mailbox at usa",
            request: Request::get(c(2), "usa", "/owa/").user("bob@contoso.com:pw"),
            expect: "200 link page to www.europe",
            check: |r| {
                r.status == 200
                    && r.back.is_empty()
                    && r.body.contains("https://www.europe.contoso.com/owa")
            },
        },
        Case {
            rule: "R8",
            what: "OWA, asia mailbox at usa",
            request: Request::get(c(3), "usa", "/owa/").user("CONTOSO\\carol:pw"),
            expect: "200 via asia-N to mbx-asia-1",
            check: |r| {
                r.status == 200 && r.back.starts_with("asia-") && starts(r, "mbx-asia-1 /owa/")
            },
        },
        Case {
            rule: "R9",
            what: "ActiveSync, europe mailbox at usa",
            request: Request::get(
                c(4),
                "usa",
                "/Microsoft-Server-ActiveSync?User=bob@contoso.com&DeviceId=d1&DeviceType=Phone&Cmd=Sync",
            )
            .method("POST"),
            expect: "451 X-MS-Location www.europe",
            check: |r| {
                r.status == 451
                    && r.ms_location
                        == "https://www.europe.contoso.com/Microsoft-Server-ActiveSync"
            },
        },
        Case {
            rule: "R9",
            what: "ActiveSync, asia mailbox at usa",
            request: Request::get(
                c(5),
                "usa",
                "/Microsoft-Server-ActiveSync?User=carol@contoso.com&DeviceId=d2&DeviceType=Phone&Cmd=Sync",
            )
            .method("POST"),
            expect: "200 via asia-N (no ExternalURL)",
            check: |r| r.status == 200 && r.back.starts_with("asia-") && starts(r, "mbx-asia-1"),
        },
        Case {
            rule: "R10",
            what: "EWS, europe mailbox at usa",
            request: Request::get(c(6), "usa", "/EWS/Exchange.asmx")
                .method("POST")
                .header("X-AnchorMailbox: bob@contoso.com")
                .body("<GetFolder/>"),
            expect: "200 via europe-N to mbx-eu-1",
            check: |r| {
                r.status == 200 && r.back.starts_with("europe-") && starts(r, "mbx-eu-1 /EWS/")
            },
        },
        Case {
            rule: "R10",
            what: "EWS opening usa and europe mailboxes",
            request: Request::get(c(14), "usa", "/EWS/Exchange.asmx")
                .method("POST")
                .header("X-AnchorMailbox: alice@contoso.com")
                .body(concat!(
                    "<Envelope><Body><GetFolder><FolderIds>",
                    "<DistinguishedFolderId Id=\"inbox\"><Mailbox><EmailAddress>bob@contoso.com",
                    "</EmailAddress></Mailbox></DistinguishedFolderId>",
                    "</FolderIds></GetFolder></Body></Envelope>"
                )),
            expect: "400 one site per request",
            check: |r| r.status == 400 && r.body.contains("one site per request"),
        },
        Case {
            rule: "R11",
            what: "Autodiscover, europe mailbox at usa",
            request: Request::get(c(7), "usa", "/Autodiscover/Autodiscover.xml")
                .method("POST")
                .body("<Autodiscover><Request><EMailAddress>bob@contoso.com</EMailAddress></Request></Autodiscover>"),
            expect: "200 via europe-N to mbx-eu-1",
            check: |r| {
                r.status == 200 && r.back.starts_with("europe-") && starts(r, "mbx-eu-1 /Autodiscover/")
            },
        },
        Case {
            rule: "R13",
            what: "/exchange, 2003 mailbox at usa",
            request: Request::get(c(8), "usa", "/exchange/dave/").user("CONTOSO\\dave:pw"),
            expect: "200 from be-2003 over HTTP",
            check: |r| r.status == 200 && r.back == "be-2003" && starts(r, "be-2003 /exchange/dave/"),
        },
        Case {
            rule: "R13",
            what: "/owa, 2003 mailbox at usa",
            request: Request::get(c(9), "usa", "/owa/").user("CONTOSO\\dave:pw"),
            expect: "error page naming /exchange",
            check: |r| r.status >= 400 && r.back.is_empty() && r.body.contains("/exchange"),
        },
        Case {
            rule: "R8",
            what: "OWA, usa mailbox at europe",
            request: Request::get(c(10), "europe", "/owa/").user("alice.smith@contoso.com:pw"),
            expect: "200 link page to www.usa",
            check: |r| {
                r.status == 200
                    && r.front.starts_with("europe-")
                    && r.body.contains("https://www.usa.contoso.com/owa")
            },
        },
        Case {
            rule: "R12",
            what: "ActiveSync, 2010 mailbox at 2007 SP1 europe",
            request: Request::get(
                c(11),
                "europe",
                "/Microsoft-Server-ActiveSync?User=alice@contoso.com&DeviceId=d3&DeviceType=Phone&Cmd=Ping",
            )
            .method("POST"),
            expect: "451 X-MS-Location www.usa",
            check: |r| {
                r.status == 451
                    && r.ms_location == "https://www.usa.contoso.com/Microsoft-Server-ActiveSync"
            },
        },
        Case {
            rule: "R17",
            what: "health check on port 80",
            request: Request::get(c(12), "usa", "/owa/healthcheck.htm").plain(),
            expect: "200",
            check: |r| r.status == 200 && r.front.starts_with("usa-"),
        },
        Case {
            rule: "R20",
            what: "a request that looped through every usa node",
            request: Request::get(c(13), "usa", "/owa/")
                .header("X-Balancer-Via: usa-1, usa-2"),
            expect: "508 loop detected",
            check: |r| r.status == 508,
        },
    ]
}

fn mark(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "X"
    }
}

fn demo(prefix: &str) -> anyhow::Result<bool> {
    println!(
        "bringing the Contoso lab up: client, router, usa-1 usa-2 europe-1 europe-2 asia-1 asia-2 \
              (XDP + balancer run), back ends mbx-usa-1 mbx-eu-1 mbx-asia-1 be-2003 ..."
    );
    let mut lab = Lab::up(prefix)?;
    let result = run_demo(&mut lab);
    if let Ok(false) | Err(_) = result {
        for node in ["usa-1", "usa-2", "europe-1", "asia-1"] {
            eprintln!("--- {node}.log (tail) ---");
            let log = lab.log(node);
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
    println!("\ntaking the lab down");
    lab.down();
    let ok = result?;
    println!(
        "\n{}",
        if ok {
            "all rows as MISSION.md says"
        } else {
            "some rows are wrong (marked X)"
        }
    );
    Ok(ok)
}

fn run_demo(lab: &mut Lab) -> anyhow::Result<bool> {
    let mut ok = true;
    println!(
        "\n{:<5} {:<44} {:<10} {:<9} {:<11} {:<6} {:<32} check",
        "rule", "case", "client", "served by", "upstream", "status", "MISSION.md says"
    );
    for case in cases() {
        let reply = lab.send(&case.request);
        let right = reply.as_ref().is_ok_and(|r| (case.check)(r));
        ok &= right;
        let r = reply.unwrap_or_else(|e| Reply {
            body: format!("curl: {e}"),
            ..Default::default()
        });
        println!(
            "{:<5} {:<44} {:<10} {:<9} {:<11} {:<6} {:<32} {}",
            case.rule,
            case.what,
            case.request.client,
            r.front,
            if r.back.is_empty() { "-" } else { &r.back },
            r.status,
            case.expect,
            mark(right)
        );
        if !right {
            println!("      answer: {}", r.body.lines().next().unwrap_or(""));
        }
    }
    ok &= drain(lab)?;
    ok &= array_failure(lab)?;
    ok &= upstream_failure(lab)?;
    Ok(ok)
}

/// Which usa node serves each client, over HTTPS and plain HTTP, and who the table names.
fn affinity(lab: &Lab, clients: &[IpAddr]) -> anyhow::Result<Vec<(String, String, String)>> {
    let maps = balancer_user::dataplane::DataplaneMaps::open(&lab.pin_dir("usa-1"))?;
    let vip = topology::site("usa").vip;
    clients
        .iter()
        .map(|c| {
            let get = |r: Request| {
                lab.send(&r)
                    .map(|r| r.front)
                    .unwrap_or_else(|e| format!("error: {e}"))
            };
            let https = get(Request::get(*c, "usa", "/owa/healthcheck.htm"));
            let http = get(Request::get(*c, "usa", "/owa/healthcheck.htm").plain());
            let tuple = balancer_common::hash::FlowTuple {
                src: balancer_user::dataplane::sync::map_addr(*c),
                dst: balancer_user::dataplane::sync::map_addr(vip.into()),
                sport_be: 0,
                dport_be: 443u16.to_be(),
                proto: balancer_common::vip::PROTO_TCP,
                is_v4: true,
            };
            let owner = maps.ring_owner(balancer_common::vip::AFFINITY_SINGLE, &tuple)?;
            Ok((https, http, format!("usa-{owner}")))
        })
        .collect()
}

/// An operator drains usa-2 on both nodes (`balancer xdp health usa-2 down`): its clients move
/// to usa-1, and the peer checks, which usa-2 still passes, leave it out until the operator
/// brings it back.
fn drain(lab: &mut Lab) -> anyhow::Result<bool> {
    let health = |state: &str| -> anyhow::Result<()> {
        for node in ["usa-1", "usa-2"] {
            balancer_tests::netns::run(
                std::process::Command::new(lab.balancer())
                    .args(["xdp", "health", "--config"])
                    .arg(lab.config_path(node))
                    .args(["usa-2", state]),
            )?;
        }
        Ok(())
    };
    println!("\nR3: an operator drains usa-2 (it still passes its peer checks)");
    health("down")?;
    // A reload restarts the peer checks, which start from the table (usa-2 down) and see it
    // pass: drained, it stays out. (The config file is polled every 2 s; rise is 2 checks.)
    for node in ["usa-1", "usa-2"] {
        let path = lab.config_path(node);
        std::fs::write(&path, std::fs::read(&path)?)?;
    }
    std::thread::sleep(std::time::Duration::from_secs(6));
    let clients: Vec<IpAddr> = (1..=CLIENTS).map(client).collect();
    let served = affinity(lab, &clients)?;
    let (on_1, up) = (
        served.iter().filter(|s| s.0 == "usa-1").count(),
        lab.up_members("usa-1")?,
    );
    let kept_out = lab.log("usa-1").contains("an operator drained it");
    let ok = on_1 == clients.len() && up == [1] && lab.up_members("usa-2")? == [1] && kept_out;
    println!(
        "after a reload: tables' members up {up:?}; {on_1} of {} clients served by usa-1; \
         usa-1's checks saw usa-2 pass and left it out: {kept_out} {}",
        clients.len(),
        mark(ok)
    );
    health("up")?;
    lab.wait_array_up("usa-1", 2)?;
    lab.wait_array_up("usa-2", 2)?;
    println!("usa-2 back: tables have both nodes up");
    Ok(ok)
}

/// R2, R3: client affinity on the usa array; usa-2 fails (crash, link down, withdrawn by the
/// upstream router); usa-1's peer checks take it out of the table; only its clients move.
fn array_failure(lab: &mut Lab) -> anyhow::Result<bool> {
    let clients: Vec<IpAddr> = (1..=CLIENTS).map(client).collect();
    let mut ok = true;
    println!("\nR2: client IP affinity on the usa array (ports 443 and 80)");
    println!(
        "{:<10} {:<8} {:<8} {:<8} check",
        "client", "443 by", "80 by", "table"
    );
    let before = affinity(lab, &clients)?;
    for (c, (https, http, owner)) in clients.iter().zip(&before) {
        let right = https == http && https == owner;
        ok &= right;
        println!("{c:<10} {https:<8} {http:<8} {owner:<8} {}", mark(right));
    }
    let on_2 = before.iter().filter(|b| b.0 == "usa-2").count();
    ok &= on_2 > 0 && on_2 < clients.len();

    println!("\nR3, R17: usa-2 fails (process killed, link down, withdrawn from ECMP); usa-1's checks take it out");
    lab.kill("usa-2")?;
    let router = lab.ns("router");
    balancer_tests::netns::run(
        std::process::Command::new("ip").args(["-n", &router, "link", "set", "r-usa-2", "down"]),
    )?;
    lab.route_vip(topology::site("usa"), &["usa-2"])?;
    lab.wait_table("usa-1", |up| up == [1])?;
    println!(
        "{:<10} {:<8} {:<8} {:<8} check",
        "client", "before", "now", "table"
    );
    let after = affinity(lab, &clients)?;
    for (c, (was, now)) in clients.iter().zip(before.iter().zip(&after)) {
        let right = now.0 == "usa-1" && now.2 == "usa-1" && (was.0 == "usa-2" || now.0 == was.0);
        ok &= right;
        println!(
            "{c:<10} {:<8} {:<8} {:<8} {}",
            was.0,
            now.0,
            now.2,
            mark(right)
        );
    }
    println!(
        "{on_2} clients of usa-2 moved to usa-1; {} stayed where they were",
        clients.len() - on_2
    );
    Ok(ok)
}

/// R14, R17: OWA for an asia mailbox sticks to one asia node; that node crashes, and the
/// mailbox is proxied to the other.
fn upstream_failure(lab: &mut Lab) -> anyhow::Result<bool> {
    let owa = || Request::get(client(3), "usa", "/owa/").user("CONTOSO\\carol:pw");
    let before: Vec<String> = (0..3)
        .map(|_| lab.send(&owa()).map(|r| r.back).unwrap_or_default())
        .collect();
    let stuck = before[0].clone();
    let other = if stuck == "asia-1" {
        "asia-2"
    } else {
        "asia-1"
    };
    println!(
        "\nR14: OWA for carol (asia) sticks to one node: {}",
        before.join(", ")
    );
    let mut ok = before.iter().all(|b| *b == stuck) && stuck.starts_with("asia-");
    println!("R17: {stuck}'s router crashes; carol is proxied to {other}");
    lab.kill(&stuck)?;
    println!(
        "{:<22} {:<9} {:<11} {:<6} check",
        "request", "served by", "upstream", "status"
    );
    for i in 1..=3 {
        let r = lab.send(&owa()).unwrap_or_default();
        let right = r.status == 200 && r.back == other;
        ok &= right;
        println!(
            "{:<22} {:<9} {:<11} {:<6} {}",
            format!("OWA carol #{i}"),
            r.front,
            r.back,
            r.status,
            mark(right)
        );
    }
    Ok(ok)
}
