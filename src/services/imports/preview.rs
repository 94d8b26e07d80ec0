//! A file looked at before it is imported: its columns, where each would go, its first
//! rows as they read; and its records counted, for a job's progress.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde_json::{Map, Value};

use super::decode::{Decoding, detect_delimiter, detect_encoding, text_of};
use super::{ImportFormat, Target};
use crate::error::{Error, Result};

/// The rows a preview shows.
const PREVIEW_ROWS: usize = 5;
/// Columns a preview names (a file with more is refused as an import would read it).
const PREVIEW_COLUMNS: usize = 200;

/// A file's first rows, as an import would read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePreview {
    /// The columns (CSV header, or the keys of the first NDJSON records), each with what an
    /// import does with it when no mapping says otherwise.
    pub columns: Vec<ColumnPreview>,
    /// The first rows, one value per column (empty where the row has none).
    pub rows: Vec<Vec<String>>,
    /// The CSV delimiter detected.
    pub delimiter: Option<char>,
    /// The encoding detected.
    pub encoding: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnPreview {
    pub name: String,
    /// `email`, `company`, …, `attributes.<name>` or `ignore`: what an import does with the
    /// column unless told otherwise.
    pub target: String,
}

/// What a column may be mapped to, besides `attributes.<name>`.
pub const COLUMN_TARGETS: [&str; 9] =
    ["email", "company", "country", "tags", "lists", "attributes", "status", "suppressed", "ignore"];

/// Reads the start of a file; its delimiter and encoding are detected.
pub fn preview_file(path: &Path, format: ImportFormat) -> Result<FilePreview> {
    let mut head = Vec::with_capacity(64 * 1024);
    let file = std::fs::File::open(path).map_err(|e| Error::internal(format!("{}: {e}", path.display())))?;
    file.take(64 * 1024).read_to_end(&mut head).map_err(Error::internal)?;
    let encoding = detect_encoding(&head);
    let text = BufReader::new(Decoding::new(head.as_slice(), encoding));
    let column = |name: &str| ColumnPreview { name: name.to_owned(), target: Target::default_for(name).name() };
    match format {
        ImportFormat::Csv => {
            let delimiter = detect_delimiter(&head);
            let mut reader =
                csv::ReaderBuilder::new().delimiter(delimiter).flexible(true).has_headers(true).from_reader(text);
            let headers: Vec<String> = reader
                .headers()
                .map_err(|e| Error::field("file", format!("the header line cannot be read: {e}")))?
                .iter()
                .map(|h| h.trim_start_matches('\u{feff}').trim().to_owned())
                .collect();
            if headers.iter().all(String::is_empty) {
                return Err(Error::field("file", "is empty: its first line must name the columns"));
            }
            if headers.len() > PREVIEW_COLUMNS {
                return Err(Error::field("file", format!("has {} columns; at most {PREVIEW_COLUMNS}", headers.len())));
            }
            let rows = reader
                .records()
                .take(PREVIEW_ROWS)
                .filter_map(std::result::Result::ok)
                .map(|record| (0..headers.len()).map(|i| record.get(i).unwrap_or("").to_owned()).collect())
                .collect();
            Ok(FilePreview {
                columns: headers.iter().map(|h| column(h)).collect(),
                rows,
                delimiter: Some(char::from(delimiter)),
                encoding: encoding.name(),
            })
        }
        ImportFormat::Ndjson => {
            let objects: Vec<Map<String, Value>> = text
                .lines()
                .map_while(std::result::Result::ok)
                .filter(|line| !line.trim().is_empty())
                .take(PREVIEW_ROWS)
                .filter_map(|line| serde_json::from_str(&line).ok())
                .collect();
            let mut names: Vec<String> = Vec::new();
            for key in objects.iter().flat_map(Map::keys) {
                if !names.contains(key) && names.len() < PREVIEW_COLUMNS {
                    names.push(key.clone());
                }
            }
            if names.is_empty() {
                return Err(Error::field("file", "holds no JSON object on its first lines"));
            }
            let rows = objects
                .iter()
                .map(|object| names.iter().map(|n| object.get(n).and_then(text_of).unwrap_or_default()).collect())
                .collect();
            Ok(FilePreview {
                columns: names.iter().map(|n| column(n)).collect(),
                rows,
                delimiter: None,
                encoding: encoding.name(),
            })
        }
    }
}

/// The records of a file, counted by its non-empty lines (less the header of a CSV file):
/// exact unless a quoted CSV value spans lines, where it counts more.
pub fn count_records(path: &Path, format: ImportFormat) -> Result<u64> {
    let file = std::fs::File::open(path).map_err(|e| Error::internal(format!("{}: {e}", path.display())))?;
    let mut reader = BufReader::with_capacity(1024 * 1024, file);
    let (mut lines, mut in_line) = (0u64, false);
    loop {
        let buffer = reader.fill_buf().map_err(Error::internal)?;
        if buffer.is_empty() {
            break;
        }
        for byte in buffer {
            match byte {
                b'\n' => {
                    lines += u64::from(in_line);
                    in_line = false;
                }
                b'\r' | b' ' | b'\t' => {}
                _ => in_line = true,
            }
        }
        let read = buffer.len();
        reader.consume(read);
    }
    lines += u64::from(in_line);
    Ok(match format {
        ImportFormat::Csv => lines.saturating_sub(1),
        ImportFormat::Ndjson => lines,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file in the temporary folder, removed when dropped.
    struct Scratch(std::path::PathBuf);

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn file_with(text: &[u8]) -> Scratch {
        let path = std::env::temp_dir().join(format!("consento-preview-{}", uuid::Uuid::new_v4()));
        std::fs::write(&path, text).unwrap();
        Scratch(path)
    }

    #[test]
    fn a_csv_preview_names_its_columns_with_where_each_goes_and_shows_its_first_rows() {
        let file = file_with(
            "E-mail;Company;Favourite colour\r\nada@example.org;Engines Ltd;green\r\nbob@example.org;;\r\n".as_bytes(),
        );
        let preview = preview_file(&file.0, ImportFormat::Csv).unwrap();
        let columns: Vec<(&str, &str)> = preview.columns.iter().map(|c| (c.name.as_str(), c.target.as_str())).collect();
        assert_eq!(
            columns,
            [("E-mail", "email"), ("Company", "company"), ("Favourite colour", "attributes.Favourite colour")]
        );
        assert_eq!(preview.rows, [vec!["ada@example.org", "Engines Ltd", "green"], vec!["bob@example.org", "", ""]]);
        assert_eq!((preview.delimiter, preview.encoding), (Some(';'), "UTF-8"));
    }

    #[test]
    fn a_latin1_file_reads_as_its_words() {
        let file = file_with(b"email,city\nzoe@example.org,K\xf6ln\n");
        let preview = preview_file(&file.0, ImportFormat::Csv).unwrap();
        assert_eq!(preview.rows[0][1], "Köln");
        assert_eq!(preview.encoding, "windows-1252");
    }

    #[test]
    fn an_ndjson_preview_gathers_the_keys_of_its_first_records() {
        let file = file_with(
            b"{\"email\":\"a@example.org\",\"plan\":\"pro\"}\n\n{\"email\":\"b@example.org\",\"tags\":[\"x\"]}\n",
        );
        let preview = preview_file(&file.0, ImportFormat::Ndjson).unwrap();
        let names: Vec<&str> = preview.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["email", "plan", "tags"]);
        assert_eq!(preview.rows[1], ["b@example.org", "", "[\"x\"]"]);
    }

    #[test]
    fn an_empty_file_is_refused_with_the_reason() {
        let file = file_with(b"");
        match preview_file(&file.0, ImportFormat::Csv) {
            Err(Error::Validation(faults)) => {
                assert_eq!(faults[0].field, "file");
                assert!(faults[0].message.contains("empty"), "{}", faults[0].message);
            }
            other => panic!("an empty file is refused: {other:?}"),
        }
    }

    #[test]
    fn records_are_counted_by_their_lines_without_the_header_or_blank_lines() {
        let csv = file_with(b"email\r\na@example.org\r\n\r\nb@example.org");
        assert_eq!(count_records(&csv.0, ImportFormat::Csv).unwrap(), 2);
        let ndjson = file_with(b"{}\n{}\n  \n{}\n");
        assert_eq!(count_records(&ndjson.0, ImportFormat::Ndjson).unwrap(), 3);
    }
}
