//! Inter-processor interrupts received by some cores (`RES` and `CAL` in `/proc/interrupts`):
//! mostly another core waking a task there. A task woken on a core that is running goes on
//! its queue with a rescheduling interrupt at most; one woken on a core that has halted needs
//! a function-call interrupt to start it. In a virtual machine each costs the sending core an
//! exit to the hypervisor, and the receiving one its time back from the hypervisor (see
//! [`crate::steal`]).
//!
//! In the L7 handshake load (`wrk -c20`, a connection per request), the router's core, idle
//! about a third of the time, received 1.1 to 2.2 function-call interrupts per request; nginx's,
//! busy, 0.01 to 0.10. They were sent from the core of the generator and the upstream: with the
//! router, wrk's system time per request was 13 µs higher and the upstream's CPU 6 to 10 µs,
//! and that core is the one that bounds that load's requests/s.

/// The rows counted: rescheduling and function-call interrupts.
const ROWS: [&str; 2] = ["RES:", "CAL:"];

/// The interrupts counted on `cores` (the whole box when empty) since boot; 0 when
/// `/proc/interrupts` cannot be read.
pub fn received(cores: &[usize]) -> u64 {
    std::fs::read_to_string("/proc/interrupts")
        .map(|text| parse(&text, cores))
        .unwrap_or(0)
}

/// The sum of [`ROWS`] over the columns of `cores`, found by their `CPUn` header (offline
/// cores have no column).
fn parse(text: &str, cores: &[usize]) -> u64 {
    let mut lines = text.lines();
    let Some(header) = lines.next() else { return 0 };
    let columns: Vec<usize> = header
        .split_whitespace()
        .enumerate()
        .filter(|(_, name)| {
            let core = name
                .strip_prefix("CPU")
                .and_then(|n| n.parse::<usize>().ok());
            cores.is_empty() || core.is_some_and(|c| cores.contains(&c))
        })
        .map(|(column, _)| column)
        .collect();
    lines
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            ROWS.contains(&fields.next()?).then_some(fields)
        })
        .flat_map(|fields| {
            let counts: Vec<u64> = fields.map_while(|f| f.parse().ok()).collect();
            columns.iter().filter_map(move |&c| counts.get(c).copied())
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "           CPU0       CPU1       CPU3
  0:         40          0          0   IO-APIC   2-edge      timer
LOC:     102030     203040     304050   Local timer interrupts
RES:        100        200        300   Rescheduling interrupts
CAL:       1000       2000       3000   Function call interrupts
TLB:          7          8          9   TLB shootdowns
";

    #[test]
    fn rescheduling_and_function_call_interrupts_are_summed_by_core_name() {
        assert_eq!(parse(TEXT, &[0]), 1_100);
        assert_eq!(
            parse(TEXT, &[1, 3]),
            5_500,
            "CPU2 is offline: the third column is CPU3"
        );
        assert_eq!(parse(TEXT, &[2]), 0);
        assert_eq!(parse(TEXT, &[]), 6_600, "the whole box");
        assert_eq!(parse("", &[0]), 0);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn this_box_has_the_rows() {
        let text = std::fs::read_to_string("/proc/interrupts").unwrap();
        for row in ROWS {
            assert!(
                text.lines().any(|l| l.trim_start().starts_with(row)),
                "no {row} row in /proc/interrupts"
            );
        }
    }
}
