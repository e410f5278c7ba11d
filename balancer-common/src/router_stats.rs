//! The L7 router's counters, published by `balancer run` into the pinned map
//! [`crate::maps::ROUTER_STATS`] once a second, so that `balancer status`, `balancer stats`
//! and `bpftool map dump` read them like the data plane's. Totals carry over a restart (the new
//! process starts from the pinned values); `connections_open` is the running process's.

/// Value of [`crate::maps::ROUTER_STATS`] (one entry).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RouterCounters {
    /// HTTPS connections open now.
    pub connections_open: u64,
    /// HTTPS connections accepted.
    pub connections: u64,
    /// TLS handshakes that failed or timed out.
    pub tls_failures: u64,
    /// Requests answered (HTTPS).
    pub requests: u64,
    pub responses_2xx: u64,
    pub responses_3xx: u64,
    pub responses_4xx: u64,
    pub responses_5xx: u64,
    /// Decisions (R7-R14): proxied to this site's back end.
    pub local: u64,
    /// Proxied to another site's node (CAS-CAS).
    pub proxied: u64,
    /// Proxied to an Exchange 2003 back end.
    pub legacy: u64,
    /// Redirected: OWA link page, 302/307, ActiveSync 451.
    pub redirected: u64,
    /// Refused by the decision (versions, EWS across sites, loops...).
    pub refused: u64,
    /// Unix time of the last publication, in seconds.
    pub updated_unix: u64,
    /// Process id of the publishing `balancer run`.
    pub pid: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<RouterCounters>() == 120);
