//! What an EWS (SOAP) request body says about the mailboxes it opens, for R10: "a request
//! naming several mailboxes in different sites fails, except the Availability service".
//!
//! A mailbox is *opened* by a `Mailbox` inside a `DistinguishedFolderId` (another user's
//! folder: delegate access), or named by the impersonation header
//! (`ExchangeImpersonation/ConnectingSID`). Addresses elsewhere are not mailboxes being opened
//! (the recipients of a message being sent, say) and are ignored. A `GetUserAvailabilityRequest`
//! (free/busy over many mailboxes) is the Availability service.

use super::normalize;
use quick_xml::events::Event;

/// What the body names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EwsRequest {
    /// Normalized names of the mailboxes the request opens, in order, without duplicates.
    pub mailboxes: Vec<String>,
    /// A request to the Availability service.
    pub availability: bool,
}

/// Most mailboxes collected from one body (a bound on work, not a limit of EWS).
const MAX_MAILBOXES: usize = 64;
/// Deepest element nesting followed.
const MAX_DEPTH: usize = 64;

/// Reads an EWS request body; `None` if it is not well-formed XML.
pub fn parse(body: &[u8]) -> Option<EwsRequest> {
    let mut reader = quick_xml::Reader::from_reader(body);
    let mut path: Vec<Vec<u8>> = Vec::new();
    let mut found = EwsRequest::default();
    let mut buf = Vec::new();
    loop {
        match reader.read_event_into(&mut buf).ok()? {
            Event::Start(e) => {
                let name = e.local_name().as_ref().to_ascii_lowercase();
                if name == b"getuseravailabilityrequest" {
                    found.availability = true;
                }
                if path.len() >= MAX_DEPTH {
                    return None;
                }
                path.push(name);
            }
            Event::End(_) => {
                path.pop();
            }
            Event::Text(t) if opens_a_mailbox(&path) => {
                let text = t.unescape().ok()?;
                if let Some(name) = normalize(&text) {
                    if !found.mailboxes.contains(&name) && found.mailboxes.len() < MAX_MAILBOXES {
                        found.mailboxes.push(name);
                    }
                }
            }
            Event::Eof => return Some(found),
            _ => {}
        }
        buf.clear();
    }
}

/// Whether the element path (lowercase local names) is an address of a mailbox being opened.
fn opens_a_mailbox(path: &[Vec<u8>]) -> bool {
    let ends_with = |tail: &[&[u8]]| {
        path.len() >= tail.len()
            && path[path.len() - tail.len()..]
                .iter()
                .zip(tail)
                .all(|(a, b)| a.as_slice() == *b)
    };
    ends_with(&[b"distinguishedfolderid", b"mailbox", b"emailaddress"])
        || ends_with(&[b"connectingsid", b"primarysmtpaddress"])
        || ends_with(&[b"connectingsid", b"smtpaddress"])
}

#[cfg(test)]
mod tests {
    use super::*;

    const FOLDER_OF: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"
  xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"
  xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages">
  <soap:Header>
    <t:ExchangeImpersonation><t:ConnectingSID>
      <t:PrimarySmtpAddress>Alice@Contoso.com</t:PrimarySmtpAddress>
    </t:ConnectingSID></t:ExchangeImpersonation>
  </soap:Header>
  <soap:Body><m:GetFolder><m:FolderIds>
    <t:DistinguishedFolderId Id="inbox"><t:Mailbox><t:EmailAddress>bob@contoso.com</t:EmailAddress></t:Mailbox></t:DistinguishedFolderId>
    <t:DistinguishedFolderId Id="calendar"><t:Mailbox><t:EmailAddress>bob@contoso.com</t:EmailAddress></t:Mailbox></t:DistinguishedFolderId>
  </m:FolderIds></m:GetFolder></soap:Body>
</soap:Envelope>"#;

    #[test]
    fn r10_mailboxes_opened_by_folder_and_impersonation() {
        let r = parse(FOLDER_OF.as_bytes()).unwrap();
        assert_eq!(r.mailboxes, ["alice@contoso.com", "bob@contoso.com"]);
        assert!(!r.availability);
    }

    #[test]
    fn r10_recipients_of_a_message_are_not_mailboxes_opened() {
        let body = r#"<Envelope><Body><CreateItem><Items><Message>
            <ToRecipients><Mailbox><EmailAddress>carol@contoso.com</EmailAddress></Mailbox></ToRecipients>
        </Message></Items></CreateItem></Body></Envelope>"#;
        assert_eq!(parse(body.as_bytes()).unwrap(), EwsRequest::default());
    }

    #[test]
    fn r10_availability_is_recognised() {
        let body = r#"<Envelope><Body><GetUserAvailabilityRequest><MailboxDataArray>
            <MailboxData><Email><Address>bob@contoso.com</Address></Email></MailboxData>
        </MailboxDataArray></GetUserAvailabilityRequest></Body></Envelope>"#;
        let r = parse(body.as_bytes()).unwrap();
        assert!(r.availability);
    }

    #[test]
    fn broken_xml_is_not_read() {
        assert_eq!(parse(b"<a><b></a>"), None);
        let deep = "<a>".repeat(MAX_DEPTH + 1);
        assert_eq!(parse(deep.as_bytes()), None);
    }
}
