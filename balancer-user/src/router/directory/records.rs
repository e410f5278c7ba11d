//! Mailbox records as operators write them: CSV with a header row
//! (`address,aliases,site,server,version`, aliases separated by `;`) or JSON lines
//! (`{"address": ..., "aliases": [...], "site": ..., "server": ..., "version": "2010"}`).
//! A file is parsed whole before anything is written; an error names the line and the field.

use super::super::identity;
use super::super::version::Version;
use balancer_common::directory::{MAX_LABEL_LEN, MAX_NAME_LEN};
use serde::Deserialize;

/// One mailbox: its primary address, its aliases and where it lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxRecord {
    pub address: String,
    pub aliases: Vec<String>,
    pub site: String,
    pub server: String,
    pub version: Version,
}

/// A record that cannot be imported.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {field}: {reason}")]
pub struct RecordError {
    pub line: usize,
    pub field: &'static str,
    pub reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRecord {
    address: String,
    #[serde(default)]
    aliases: Vec<String>,
    site: String,
    server: String,
    version: String,
}

#[derive(Deserialize)]
struct CsvRecord {
    address: String,
    #[serde(default)]
    aliases: String,
    site: String,
    server: String,
    version: String,
}

/// The input format of an import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Jsonl,
}

impl Format {
    /// JSON lines if the first non-blank character opens an object, CSV otherwise.
    pub fn detect(text: &str) -> Self {
        match text.trim_start().starts_with('{') {
            true => Format::Jsonl,
            false => Format::Csv,
        }
    }
}

/// Parses and validates every record of `text`.
pub fn parse(text: &str, format: Format) -> Result<Vec<MailboxRecord>, RecordError> {
    match format {
        Format::Jsonl => parse_jsonl(text),
        Format::Csv => parse_csv(text),
    }
}

fn parse_jsonl(text: &str) -> Result<Vec<MailboxRecord>, RecordError> {
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let raw: JsonRecord = serde_json::from_str(line).map_err(|e| RecordError {
            line: line_no,
            field: "record",
            reason: e.to_string(),
        })?;
        records.push(validate(
            line_no,
            &raw.address,
            raw.aliases.iter().map(String::as_str),
            &raw.site,
            &raw.server,
            &raw.version,
        )?);
    }
    Ok(records)
}

fn parse_csv(text: &str) -> Result<Vec<MailboxRecord>, RecordError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| RecordError {
            line: 1,
            field: "header",
            reason: e.to_string(),
        })?
        .clone();
    let mut records = Vec::new();
    for row in reader.records() {
        let row = row.map_err(|e| RecordError {
            line: e.position().map_or(0, |p| p.line() as usize),
            field: "record",
            reason: e.to_string(),
        })?;
        let line = row.position().map_or(0, |p| p.line() as usize);
        let raw: CsvRecord = row.deserialize(Some(&headers)).map_err(|e| RecordError {
            line,
            field: "record",
            reason: e.to_string(),
        })?;
        let aliases = raw.aliases.split(';').filter(|a| !a.trim().is_empty());
        records.push(validate(
            line,
            &raw.address,
            aliases,
            &raw.site,
            &raw.server,
            &raw.version,
        )?);
    }
    Ok(records)
}

/// Checks and normalizes one record's fields.
pub fn validate<'a>(
    line: usize,
    address: &str,
    aliases: impl IntoIterator<Item = &'a str>,
    site: &str,
    server: &str,
    version: &str,
) -> Result<MailboxRecord, RecordError> {
    let err = |field, reason: String| RecordError {
        line,
        field,
        reason,
    };
    let address = name(address).map_err(|r| err("address", r))?;
    if !address.contains('@') {
        return Err(err(
            "address",
            format!("{address:?} is not an SMTP address"),
        ));
    }
    let aliases = aliases
        .into_iter()
        .map(name)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|r| err("aliases", r))?;
    Ok(MailboxRecord {
        address,
        aliases,
        site: label(site).map_err(|r| err("site", r))?,
        server: label(server).map_err(|r| err("server", r))?,
        version: version.parse().map_err(|r| err("version", r))?,
    })
}

fn name(raw: &str) -> Result<String, String> {
    let name = identity::normalize(raw)
        .ok_or_else(|| format!("{raw:?} is empty, too long or has control characters"))?;
    checked(name, MAX_NAME_LEN)
}

fn label(raw: &str) -> Result<String, String> {
    checked(raw.trim().to_string(), MAX_LABEL_LEN)
}

fn checked(text: String, max: usize) -> Result<String, String> {
    if text.is_empty() {
        return Err("empty".into());
    }
    if text.len() > max {
        return Err(format!("{text:?} is longer than {max} bytes"));
    }
    if text.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!(
            "{text:?} contains whitespace or a control character"
        ));
    }
    Ok(text)
}
