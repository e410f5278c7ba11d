//! The results of a run: `target/bench/results.json` (every figure, with the peer's figure
//! from the same run and the ratio) and `target/bench/report.md` (the same as a table, with
//! the machine, the kernel, the versions of the peers and load generators and the exact
//! commands), also printed; the configuration files the commands name go under
//! `target/bench/configs/`.

use serde::Serialize;
use std::{collections::BTreeMap, fmt::Write as _, path::Path};

/// One comparison: the project's figure and its baseline or peer, measured in the same run.
#[derive(Debug, Serialize)]
pub struct Comparison {
    /// Section and path, e.g. `l4.xdp.forward_v4`.
    pub key: String,
    pub unit: String,
    pub ours: f64,
    /// What `ours` is compared with (e.g. `xdp_pass` for the minimal XDP program).
    pub baseline_name: String,
    pub baseline: f64,
    /// `ours / baseline`.
    pub ratio: f64,
    pub note: String,
}

/// A figure with no peer (e.g. table build time).
#[derive(Debug, Serialize)]
pub struct Figure {
    pub key: String,
    pub unit: String,
    pub value: f64,
    pub note: String,
}

#[derive(Debug, Serialize, Default)]
pub struct Results {
    pub quick: bool,
    pub machine: Machine,
    pub command: String,
    /// The first line of each peer's and load generator's version.
    pub tools: BTreeMap<String, String>,
    /// Every command line the run used (servers, load generators, nftables), shell-quoted.
    pub commands: Vec<String>,
    pub comparisons: Vec<Comparison>,
    pub figures: Vec<Figure>,
}

#[derive(Debug, Serialize, Default)]
pub struct Machine {
    pub kernel: String,
    pub cpu: String,
    pub cores: usize,
    /// How idle cores sleep: the `cpuidle` driver and governor, and for `haltpoll` (a
    /// virtual machine's guest) how long a core polls before it halts. A core that halts in
    /// a virtual machine loses time to the hypervisor when it wakes ([`crate::steal`]).
    pub cpuidle: String,
}

impl Machine {
    pub fn read() -> Self {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string();
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
            .unwrap_or_default();
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        Self {
            kernel,
            cpu,
            cores,
            cpuidle: cpuidle(),
        }
    }
}

fn cpuidle() -> String {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let Some(driver) = read("/sys/devices/system/cpu/cpuidle/current_driver") else {
        return "no cpuidle driver".into();
    };
    let governor = read("/sys/devices/system/cpu/cpuidle/current_governor_ro")
        .or_else(|| read("/sys/devices/system/cpu/cpuidle/current_governor"))
        .unwrap_or_else(|| "unknown".into());
    match read("/sys/module/haltpoll/parameters/guest_halt_poll_ns") {
        Some(ns) if driver == "haltpoll" => {
            format!("{driver} (governor {governor}, guest_halt_poll_ns {ns})")
        }
        _ => format!("{driver} (governor {governor})"),
    }
}

impl Results {
    pub fn compare(
        &mut self,
        key: &str,
        unit: &str,
        ours: f64,
        baseline_name: &str,
        baseline: f64,
        note: &str,
    ) {
        self.comparisons.push(Comparison {
            key: key.into(),
            unit: unit.into(),
            ours,
            baseline_name: baseline_name.into(),
            baseline,
            ratio: ours / baseline,
            note: note.into(),
        });
    }

    pub fn figure(&mut self, key: &str, unit: &str, value: f64, note: &str) {
        self.figures.push(Figure {
            key: key.into(),
            unit: unit.into(),
            value,
            note: note.into(),
        });
    }

    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let m = &self.machine;
        let _ = writeln!(
            md,
            "# Benchmark report{}\n",
            if self.quick {
                " (--quick: figures not meaningful)"
            } else {
                ""
            }
        );
        let _ = writeln!(
            md,
            "Machine: {} ({} cores), kernel {}, cpuidle {}. Command: `{}`.\n",
            m.cpu, m.cores, m.kernel, m.cpuidle, self.command
        );
        let _ = writeln!(md, "Peers and load generators:\n");
        for (tool, version) in &self.tools {
            let _ = writeln!(md, "- {tool}: {version}");
        }
        md.push('\n');
        let _ = writeln!(md, "| comparison | ours | baseline / peer | theirs | ratio | note |\n|---|---:|---|---:|---:|---|");
        for c in &self.comparisons {
            let _ = writeln!(
                md,
                "| {} | {:.1} {} | {} | {:.1} {} | {:.2} | {} |",
                c.key, c.ours, c.unit, c.baseline_name, c.baseline, c.unit, c.ratio, c.note
            );
        }
        let _ = writeln!(md, "\n| figure | value | note |\n|---|---:|---|");
        for f in &self.figures {
            let _ = writeln!(md, "| {} | {:.2} {} | {} |", f.key, f.value, f.unit, f.note);
        }
        let _ = writeln!(
            md,
            "\n## Commands\n\nAs run, in order (the configuration files they name are kept \
             under `configs/` next to this report, at the same paths):\n\n```"
        );
        for command in &self.commands {
            let _ = writeln!(md, "{command}");
        }
        let _ = writeln!(md, "```");
        md
    }

    /// Writes the report, the results and the configuration files the run recorded.
    pub fn write(&mut self, dir: &Path) -> anyhow::Result<()> {
        let (commands, files) = crate::provenance::take();
        self.commands = commands;
        let configs = dir.join("configs");
        if configs.exists() {
            std::fs::remove_dir_all(&configs)?;
        }
        for (path, content) in files {
            let kept = configs.join(path.trim_start_matches('/'));
            if let Some(parent) = kept.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(kept, content)?;
        }
        std::fs::create_dir_all(dir)?;
        std::fs::write(
            dir.join("results.json"),
            serde_json::to_string_pretty(self)?,
        )?;
        std::fs::write(dir.join("report.md"), self.markdown())?;
        Ok(())
    }
}
