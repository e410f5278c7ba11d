//! The L7 router's Client Access logic (R5-R14), pure and table-tested; the HTTP server and
//! proxy around it come next.
//!
//! ## Layout
//! - [`protocol`]: which Client Access protocol a request is for (its virtual directory).
//! - [`version`]: Exchange versions, ordered for R12.
//! - [`topology`]: sites, their versions, ExternalURLs and redirection settings.
//! - [`identity`]: which mailbox a request is for (R5), the signed affinity cookie.
//! - [`directory`]: names (addresses, aliases) to mailboxes (R6), behind a trait.
//! - [`plain`]: port 80 (health checks, OWA redirected to https, the rest refused).
//! - [`server`]: the HTTPS front (limits, timeouts, h1 and h2, draining).
//! - [`proxy`]: the upstream side (HTTPS to other sites, HTTP to 2003 back ends, R14 picks).
//! - [`tls`]: certificates by SNI, reloaded all or nothing.
//! - [`service`]: the request pipeline (R5-R20) around the decision; [`responses`]: the
//!   router's own answers.
//! - [`decision`]: serve here, proxy to a site, redirect, or refuse (R7-R14).

mod accept;
pub mod decision;
pub mod directory;
mod h2_streams;
pub mod identity;
pub mod metrics;
pub mod plain;
pub mod protocol;
pub mod proxy;
pub mod responses;
pub mod server;
pub mod service;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
pub mod tls;
pub mod topology;
pub mod version;
