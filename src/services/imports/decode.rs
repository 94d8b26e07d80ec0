//! Reading a file: its encoding and delimiter detected, records numbered by the line they
//! start on, each turned into a row or the reason it cannot be one.

use std::io::Read;
use std::io::{BufRead, BufReader};
use std::path::Path;

use serde_json::{Map, Value};

use super::{CHUNK, ImportFormat, ImportOptions, Plan, Target};
use crate::domain::contact::parse_short_text;
use crate::domain::{Country, Email, ListId, Tag};
use crate::error::{Error, Result};

/// One record of the file: its index (1-based, for resuming), its line, and the row or
/// why it is refused.
pub(super) struct Record {
    pub(super) index: u64,
    pub(super) line: u64,
    pub(super) row: std::result::Result<Row, String>,
}

/// A valid row.
#[derive(Debug, Clone)]
pub(super) struct Row {
    pub(super) email: Email,
    pub(super) company: Option<String>,
    pub(super) country: Option<Country>,
    pub(super) tags: Vec<Tag>,
    pub(super) lists: Vec<ListId>,
    pub(super) attributes: Map<String, Value>,
    /// The person left (the reason, as the suppression records it): the row suppresses
    /// the address and subscribes nothing.
    pub(super) left: Option<String>,
    /// The file's `suppressed` column said so.
    pub(super) suppressed: bool,
}

/// Reads the file in chunks, skipping the first `skip` records (done before a restart);
/// `each` answers false to stop.
pub(super) fn read_records(
    path: &Path,
    format: ImportFormat,
    options: &ImportOptions,
    plan: &Plan,
    skip: u64,
    mut each: impl FnMut(Vec<Record>) -> bool,
) -> Result<()> {
    let open = || std::fs::File::open(path).map_err(|e| Error::internal(format!("{}: {e}", path.display())));
    let mut head = Vec::with_capacity(64 * 1024);
    open()?.take(64 * 1024).read_to_end(&mut head).map_err(Error::internal)?;
    let file = open()?;
    let encoding = match &options.encoding {
        Some(label) => encoding_rs::Encoding::for_label(label.as_bytes()).unwrap_or(encoding_rs::UTF_8),
        None => detect_encoding(&head),
    };
    let text = BufReader::with_capacity(256 * 1024, Decoding::new(file, encoding));
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut push = |record: Record, chunk: &mut Vec<Record>| -> bool {
        if record.index > skip {
            chunk.push(record);
        }
        if chunk.len() >= CHUNK { each(std::mem::replace(chunk, Vec::with_capacity(CHUNK))) } else { true }
    };
    match format {
        ImportFormat::Csv => {
            let delimiter = options.delimiter.map_or_else(|| detect_delimiter(&head), |d| d as u8);
            let mut reader =
                csv::ReaderBuilder::new().delimiter(delimiter).flexible(true).has_headers(true).from_reader(text);
            let headers: Vec<String> = reader
                .headers()
                .map_err(|e| Error::field("file", format!("the header line cannot be read: {e}")))?
                .iter()
                .map(|h| h.trim_start_matches('\u{feff}').trim().to_owned())
                .collect();
            let targets: Vec<Target> = headers
                .iter()
                .map(|h| plan.columns.get(h).cloned().unwrap_or_else(|| Target::default_for(h)))
                .collect();
            if !targets.contains(&Target::Email) {
                return Err(Error::field("columns", "no column holds the e-mail address (name one `email`)"));
            }
            // With CRLF line ends the csv crate puts a record's start on the `\n` ending the
            // line before, one line early.
            let crlf = u64::from(head.windows(2).any(|pair| pair == b"\r\n"));
            let mut record = csv::StringRecord::new();
            let mut index = 0u64;
            loop {
                let line = reader.position().line() + 1;
                match reader.read_record(&mut record) {
                    Ok(false) => break,
                    Ok(true) => {
                        index += 1;
                        if index <= skip {
                            continue;
                        }
                        let line = record.position().map_or(line, |p| p.line() + crlf);
                        let fields = targets.iter().zip(record.iter()).map(|(t, v)| {
                            (t, Value::String(crate::services::exports::spreadsheet_unsafe(v).to_owned()))
                        });
                        let row = to_row(fields, plan);
                        let row = if record.len() > targets.len() {
                            Err(format!("has {} fields, the header {}", record.len(), targets.len()))
                        } else {
                            row
                        };
                        if !push(Record { index, line, row }, &mut chunk) {
                            return Ok(());
                        }
                    }
                    Err(error) => {
                        index += 1;
                        let row = Err(format!("cannot be read: {error}"));
                        if !push(Record { index, line, row }, &mut chunk) {
                            return Ok(());
                        }
                        if !matches!(error.kind(), csv::ErrorKind::Utf8 { .. } | csv::ErrorKind::UnequalLengths { .. })
                        {
                            break;
                        }
                    }
                }
            }
        }
        ImportFormat::Ndjson => {
            for (number, line) in text.lines().enumerate() {
                let index = number as u64 + 1;
                if index <= skip {
                    continue;
                }
                let line_text = line.map_err(|e| Error::internal(format!("line {index}: {e}")))?;
                if line_text.trim().is_empty() {
                    continue;
                }
                let row = match serde_json::from_str::<Map<String, Value>>(&line_text) {
                    Ok(object) => {
                        let targets: Vec<(Target, Value)> = object
                            .into_iter()
                            .map(|(key, value)| {
                                (plan.columns.get(&key).cloned().unwrap_or_else(|| Target::default_for(&key)), value)
                            })
                            .collect();
                        if targets.iter().any(|(t, _)| *t == Target::Email) {
                            to_row(targets.iter().map(|(t, v)| (t, v.clone())), plan)
                        } else {
                            Err("email: is missing".to_owned())
                        }
                    }
                    Err(e) => Err(format!("is not a JSON object: {e}")),
                };
                if !push(Record { index, line: index, row }, &mut chunk) {
                    return Ok(());
                }
            }
        }
    }
    if !chunk.is_empty() {
        each(chunk);
    }
    Ok(())
}

/// UTF-8 (with or without a byte-order mark) when the start of the file is valid UTF-8,
/// otherwise Windows-1252 (a superset of Latin-1, what spreadsheets write in western Europe).
pub(super) fn detect_encoding(head: &[u8]) -> &'static encoding_rs::Encoding {
    if let Some((encoding, _)) = encoding_rs::Encoding::for_bom(head) {
        return encoding;
    }
    match std::str::from_utf8(head) {
        Ok(_) => encoding_rs::UTF_8,
        // A multi-byte character cut by the end of the sample is still UTF-8.
        Err(e) if e.error_len().is_none() && head.len() >= 64 * 1024 - 4 => encoding_rs::UTF_8,
        Err(_) => encoding_rs::WINDOWS_1252,
    }
}

/// The most frequent of `,` `;` tab `|` on the header line, outside quotes.
pub(super) fn detect_delimiter(head: &[u8]) -> u8 {
    let line = head.split(|b| *b == b'\n').next().unwrap_or(head);
    let mut counts = [0usize; 4];
    let candidates = [b',', b';', b'\t', b'|'];
    let mut quoted = false;
    for byte in line {
        if *byte == b'"' {
            quoted = !quoted;
        } else if !quoted && let Some(at) = candidates.iter().position(|c| c == byte) {
            counts[at] += 1;
        }
    }
    let best = (0..4).max_by_key(|i| (counts[*i], usize::from(*i == 0))).unwrap_or(0);
    if counts[best] == 0 { b',' } else { candidates[best] }
}

/// Reads bytes in an encoding as UTF-8.
pub(super) struct Decoding<R> {
    pub(super) inner: R,
    pub(super) decoder: encoding_rs::Decoder,
    pub(super) input: Vec<u8>,
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) eof: bool,
    /// The decoder saw the end (it must not be called again).
    pub(super) finished: bool,
}

impl<R: Read> Decoding<R> {
    pub(super) fn new(inner: R, encoding: &'static encoding_rs::Encoding) -> Self {
        Self {
            inner,
            decoder: encoding.new_decoder_with_bom_removal(),
            input: vec![0; 64 * 1024],
            start: 0,
            end: 0,
            eof: false,
            finished: false,
        }
    }
}

impl<R: Read> Read for Decoding<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if out.len() < 4 {
            return Err(std::io::Error::other("the read buffer must hold at least 4 bytes"));
        }
        loop {
            if self.finished {
                return Ok(0);
            }
            if self.start == self.end && !self.eof {
                let read = self.inner.read(&mut self.input)?;
                self.start = 0;
                self.end = read;
                self.eof = read == 0;
            }
            let (result, read, written, _) =
                self.decoder.decode_to_utf8(&self.input[self.start..self.end], out, self.eof);
            self.start += read;
            // At the end, the decoder is done once it has written all it held back; it must
            // not be called again.
            self.finished = self.eof && result == encoding_rs::CoderResult::InputEmpty;
            if written > 0 || self.finished {
                return Ok(written);
            }
        }
    }
}

pub(super) fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(text) => Some(text.clone()).filter(|t| !t.trim().is_empty()),
        other => Some(other.to_string()),
    }
}

/// Several values: a JSON array, or text split on `;` (or `,`).
pub(super) fn values_of(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items.iter().filter_map(text_of).collect(),
        other => text_of(other)
            .map(|text| {
                let separator = if text.contains(';') { ';' } else { ',' };
                text.split(separator).map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect()
            })
            .unwrap_or_default(),
    }
}

/// Checks one record; every fault of the row in one reason.
pub(super) fn to_row<'a>(
    fields: impl Iterator<Item = (&'a Target, Value)>,
    plan: &Plan,
) -> std::result::Result<Row, String> {
    let mut faults = Vec::new();
    let mut email = None;
    let mut row = Row {
        email: Email::from_trusted(String::new()),
        company: None,
        country: None,
        tags: plan.tags.clone(),
        lists: plan.lists.clone(),
        attributes: Map::new(),
        left: None,
        suppressed: false,
    };
    for (target, value) in fields {
        match target {
            Target::Email => match text_of(&value).map(|t| Email::parse(&t)) {
                Some(Ok(parsed)) => email = Some(parsed),
                Some(Err(e)) => faults.push(format!("email: {e}")),
                None => faults.push("email: is empty".to_owned()),
            },
            Target::Company => {
                if let Some(text) = text_of(&value) {
                    match parse_short_text(&text, 200) {
                        Ok(company) => row.company = Some(company),
                        Err(e) => faults.push(format!("company: {e}")),
                    }
                }
            }
            Target::Country => {
                if let Some(text) = text_of(&value) {
                    match Country::parse(&text) {
                        Ok(country) => row.country = Some(country),
                        Err(e) => faults.push(format!("country: {e}")),
                    }
                }
            }
            Target::Tags => {
                for tag in values_of(&value) {
                    match Tag::parse(&tag) {
                        Ok(tag) if !row.tags.contains(&tag) => row.tags.push(tag),
                        Ok(_) => {}
                        Err(e) => faults.push(format!("tags: {tag:?} {e}")),
                    }
                }
            }
            Target::Lists => {
                for list in values_of(&value) {
                    match plan.known_lists.get(&list) {
                        Some(id) if !row.lists.contains(id) => row.lists.push(*id),
                        Some(_) => {}
                        None => faults.push(format!("lists: there is no list {list}")),
                    }
                }
            }
            Target::Attributes => match value {
                Value::Object(map) => row.attributes.extend(map),
                Value::String(text) if text.trim().is_empty() => {}
                Value::String(text) => match serde_json::from_str::<Map<String, Value>>(&text) {
                    Ok(map) => row.attributes.extend(map),
                    Err(_) => faults.push("attributes: is not a JSON object".to_owned()),
                },
                Value::Null => {}
                _ => faults.push("attributes: is not a JSON object".to_owned()),
            },
            Target::Attribute(name) => {
                if !matches!(&value, Value::Null) && !matches!(&value, Value::String(s) if s.is_empty()) {
                    row.attributes.insert(name.clone(), value);
                }
            }
            Target::Status => {
                if let Some(text) = text_of(&value) {
                    match text.trim().to_lowercase().as_str() {
                        "" | "active" | "subscribed" | "pending" | "transactional" => {}
                        "unsubscribed" | "archived" => row.left = Some("unsubscribed".to_owned()),
                        "bounced" | "cleaned" => row.left = Some("bounced".to_owned()),
                        "complained" => row.left = Some("complained".to_owned()),
                        other => faults.push(format!(
                            "status: {other:?} is not active, subscribed, unsubscribed, bounced, cleaned or complained"
                        )),
                    }
                }
            }
            Target::Suppressed => match &value {
                Value::Bool(flag) => row.suppressed = *flag,
                other => match text_of(other).map(|t| t.trim().to_lowercase()).as_deref() {
                    None | Some("" | "false" | "0" | "no") => {}
                    Some("true" | "1" | "yes") => row.suppressed = true,
                    Some(other) => faults.push(format!("suppressed: {other:?} is not true or false")),
                },
            },
            Target::Ignore => {}
        }
    }
    if row.suppressed && row.left.is_none() {
        row.left = Some("unsubscribed".to_owned());
    }
    match email {
        Some(email) if faults.is_empty() => {
            row.email = email;
            Ok(row)
        }
        None if faults.is_empty() => Err("email: is missing".to_owned()),
        _ => Err(faults.join("; ")),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use super::*;
    use crate::domain::consent::Evidence;

    /// A plan that maps nothing: the columns take their defaults.
    fn empty_plan() -> Plan {
        Plan {
            columns: BTreeMap::new(),
            lists: Vec::new(),
            tags: Vec::new(),
            basis: None,
            evidence: Evidence::default(),
            known_lists: HashMap::new(),
            actor: String::new(),
        }
    }

    fn lines_of(csv: &str) -> Vec<u64> {
        let path = std::env::temp_dir().join(format!("consento-lines-{}.csv", uuid::Uuid::new_v4()));
        std::fs::write(&path, csv).unwrap();
        let plan = empty_plan();
        let mut lines = Vec::new();
        read_records(&path, ImportFormat::Csv, &ImportOptions::default(), &plan, 0, |chunk| {
            lines.extend(chunk.iter().map(|r| r.line));
            true
        })
        .unwrap();
        let _ = std::fs::remove_file(&path);
        lines
    }

    #[test]
    fn records_are_numbered_by_the_line_they_start_on_counting_the_header() {
        assert_eq!(lines_of("email\na@x.org\nb@x.org\n"), [2, 3]);
        assert_eq!(lines_of("email\r\na@x.org\r\nb@x.org\r\n"), [2, 3]);
        assert_eq!(lines_of("email,note\na@x.org,\"two\nlines\"\nb@x.org,\n"), [2, 4]);
    }

    #[test]
    fn the_delimiter_and_the_encoding_are_detected() {
        assert_eq!(detect_delimiter(b"email;name;\"a,b\"\n"), b';');
        assert_eq!(detect_delimiter(b"email\tname\n"), b'\t');
        assert_eq!(detect_delimiter(b"email\n"), b',');
        assert_eq!(detect_encoding("Zoë".as_bytes()), encoding_rs::UTF_8);
        assert_eq!(detect_encoding(b"Zo\xeb"), encoding_rs::WINDOWS_1252);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Whatever bytes a file holds, reading it answers: each record is a row or a
        /// reason, numbered in order; nothing panics.
        #[test]
        fn any_file_is_read_without_panicking(
            body in proptest::collection::vec(proptest::prop_oneof![
                proptest::num::u8::ANY,
                proptest::strategy::Just(b'\n'),
                proptest::strategy::Just(b','),
                proptest::strategy::Just(b'"'),
                proptest::strategy::Just(b'@'),
            ], 0..400),
            ndjson in proptest::bool::ANY,
        ) {
            let path = std::env::temp_dir().join(format!("consento-any-{}.txt", uuid::Uuid::new_v4()));
            let mut file = b"email,name\n".to_vec();
            file.extend(&body);
            std::fs::write(&path, &file).unwrap();
            let plan = empty_plan();
            let format = if ndjson { ImportFormat::Ndjson } else { ImportFormat::Csv };
            let mut indexes = Vec::new();
            let _ = read_records(&path, format, &ImportOptions::default(), &plan, 0, |chunk| {
                indexes.extend(chunk.iter().map(|r| r.index));
                true
            });
            let _ = std::fs::remove_file(&path);
            proptest::prop_assert!(indexes.windows(2).all(|pair| pair[0] < pair[1]));
        }
    }
}
