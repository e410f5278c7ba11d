//! The mailbox directory (R6) as a pinned BPF hash map: one entry per *name* (a primary SMTP
//! address or one of its aliases), each carrying the whole mailbox record, so the router
//! resolves any name with one lookup. The command-line tool writes it, the router reads it,
//! and `bpftool map dump pinned /sys/fs/bpf/balancer/DIRECTORY` prints it as text:
//!
//! ```text
//! {"key": {"name": "contoso\\alice"},
//!  "value": {"address": "alice@contoso.com", "site": "asia", "server": "mbx-asia-1",
//!            "version": 3, "flags": 1}}
//! ```
//!
//! Text fields are NUL-padded byte arrays. Rust's debug info has no C `char`, so the build
//! script rewrites the element type of exactly the fields listed in [`TEXT_FIELDS`] to a BTF
//! `char` (which is what makes bpftool print them as strings); the bytes are unchanged.
//!
//! Memory is bounded: the map is not preallocated (`BPF_F_NO_PREALLOC`), an entry costs about
//! 256 bytes of kernel memory (key, value and the kernel's element header, rounded to its
//! allocation class), and the capacity is set at load time (default
//! [`DEFAULT_DIRECTORY_ENTRIES`] names: 1 million mailboxes with one alias each, at most 512 MiB).

/// Bytes of a name or address field: up to [`MAX_NAME_LEN`] bytes and at least one NUL.
pub const NAME_BYTES: usize = 64;
/// Longest name or address the directory holds (longer ones are refused on import).
pub const MAX_NAME_LEN: usize = NAME_BYTES - 1;
/// Bytes of the site and server name fields.
pub const LABEL_BYTES: usize = 32;
/// Longest site or server name.
pub const MAX_LABEL_LEN: usize = LABEL_BYTES - 1;

/// Default capacity of [`crate::maps::DIRECTORY`], in names (addresses plus aliases).
pub const DEFAULT_DIRECTORY_ENTRIES: u32 = 2 * 1024 * 1024;

/// [`MailboxEntry::flags`]: this entry's key is an alias, not the primary address.
pub const FLAG_ALIAS: u32 = 1;

/// Key of [`crate::maps::DIRECTORY`]: a normalized name (ASCII-lowercased, trimmed),
/// NUL-padded.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MailboxName {
    pub name: [u8; NAME_BYTES],
}
const _: () = assert!(core::mem::size_of::<MailboxName>() == 64);

/// Value of [`crate::maps::DIRECTORY`]: the mailbox a name belongs to.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MailboxEntry {
    /// The mailbox's primary address (equal to the key for the primary entry).
    pub address: [u8; NAME_BYTES],
    /// The site that holds the mailbox, as named in the config's `[[sites]]`.
    pub site: [u8; LABEL_BYTES],
    /// The mailbox server.
    pub server: [u8; LABEL_BYTES],
    /// The server's version, as `balancer_user::router::version::Version::code` numbers it:
    /// 1 = 2003, 2 = 2007, 3 = 2007 SP1, 4 = 2010.
    pub version: u32,
    /// [`FLAG_ALIAS`].
    pub flags: u32,
}
const _: () = assert!(core::mem::size_of::<MailboxEntry>() == 136);

/// The (struct, field) pairs whose byte arrays are text: the build script gives exactly these
/// a BTF `char` element type so that bpftool prints them as strings.
pub const TEXT_FIELDS: &[(&str, &str)] = &[
    ("MailboxName", "name"),
    ("MailboxEntry", "address"),
    ("MailboxEntry", "site"),
    ("MailboxEntry", "server"),
];

/// Why a name does not fit a text field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextError {
    Empty,
    TooLong {
        max: usize,
    },
    /// NUL or another control character.
    ControlCharacter,
}

/// `text` as a NUL-padded field of `N` bytes (at most `N - 1` bytes of text).
pub fn text_field<const N: usize>(text: &str) -> Result<[u8; N], TextError> {
    let bytes = text.as_bytes();
    if bytes.is_empty() {
        return Err(TextError::Empty);
    }
    if bytes.len() >= N {
        return Err(TextError::TooLong { max: N - 1 });
    }
    if bytes.iter().any(|b| b.is_ascii_control()) {
        return Err(TextError::ControlCharacter);
    }
    let mut field = [0u8; N];
    field[..bytes.len()].copy_from_slice(bytes);
    Ok(field)
}

/// The text of a NUL-padded field (up to the first NUL; invalid UTF-8 gives `None`).
pub fn field_text(field: &[u8]) -> Option<&str> {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    core::str::from_utf8(&field[..end]).ok()
}
