//! The export as a table of strings.
//!
//! The text is checked first with the `csv` crate, record by record, so that a malformed
//! record is named by its row; then polars reads only the columns a preset uses, every
//! one as a string, so that `00042` keeps its zeros whatever the rows after it hold.
//! Rows are counted as a spreadsheet shows them: the header is row 1, or row 2 after a
//! PowerShell `#TYPE` line.

use std::io::Cursor;
use std::sync::Arc;

use polars::prelude::*;
use tracing::debug;

use super::IdpError;

/// The delimiters an export may use.
pub const DELIMITERS: [u8; 3] = [b',', b';', b'\t'];

/// Parses `idp.delimiter`: `auto` (or empty) sniffs; otherwise one of `,` `;` `tab` `|`.
pub fn parse_delimiter(text: &str) -> Option<Option<u8>> {
    match text.trim() {
        "" | "auto" => Some(None),
        "," => Some(Some(b',')),
        ";" => Some(Some(b';')),
        "|" => Some(Some(b'|')),
        "\t" | "tab" | "\\t" => Some(Some(b'\t')),
        _ => None,
    }
}

/// A checked export: its header, its size, and the text polars will read.
pub struct Table<'a> {
    path: &'a str,
    body: &'a str,
    pub headers: Vec<String>,
    pub delimiter: u8,
    /// The row of the first record.
    pub first_row: usize,
    /// How many records follow the header.
    pub records: usize,
}

/// The columns of a table that a preset asked for.
pub struct Loaded {
    path: String,
    frame: DataFrame,
    /// For each header index, its position in `frame`.
    position: Vec<Option<usize>>,
}

/// The values of one column, trimmed; empty is `None`. A column the export lacks is all
/// `None`.
pub struct Column<'a>(Option<Vec<Option<&'a str>>>);

impl<'a> Column<'a> {
    pub fn at(&self, row: usize) -> Option<&'a str> {
        self.0.as_ref().and_then(|values| values[row])
    }

    #[cfg(test)]
    pub fn present(&self) -> bool {
        self.0.is_some()
    }
}

impl<'a> Table<'a> {
    /// Checks `text` and reads its header. `delimiter` is `None` to sniff it.
    pub fn check(path: &'a str, text: &'a str, delimiter: Option<u8>) -> Result<Self, IdpError> {
        let (body, skipped) = skip_type_line(text);
        let body = trim_trailing_blank_lines(body);
        let delimiter = delimiter.unwrap_or_else(|| sniff(body));
        debug!(
            path,
            delimiter = %char::from(delimiter).escape_default(),
            skipped,
            "reading the export"
        );
        let first_row = skipped + 2;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(false)
            .delimiter(delimiter)
            .from_reader(body.as_bytes());
        let headers: Vec<String> = reader
            .headers()
            .map_err(|e| IdpError::Parse {
                path: path.into(),
                what: format!("the header line is unreadable: {e}"),
            })?
            .iter()
            .map(|h| h.trim().to_owned())
            .collect();
        if headers.iter().all(String::is_empty) {
            return Err(IdpError::Empty { path: path.into() });
        }
        let mut record = csv::ByteRecord::new();
        let mut records = 0usize;
        loop {
            match reader.read_byte_record(&mut record) {
                Ok(true) => {
                    // The csv crate skips blank lines but polars reads them as records of
                    // nulls: refuse one between records rather than miscount.
                    // A record's position is where the reader stood before it, so one
                    // that begins with a line break (past the `\n` of the CRLF ending the
                    // previous line) had blank lines skipped before it.
                    let bytes = body.as_bytes();
                    let mut start = record.position().map_or(0, |p| p.byte()) as usize;
                    if start > 0 && bytes.get(start - 1..=start) == Some(b"\r\n".as_slice()) {
                        start += 1;
                    }
                    if matches!(bytes.get(start), Some(b'\n' | b'\r')) {
                        return Err(IdpError::Row {
                            path: path.into(),
                            row: first_row + records,
                            what: "the line is blank, between records; remove it (blank \
                                   lines are ignored only at the end of the file)"
                                .into(),
                        });
                    }
                    records += 1;
                }
                Ok(false) => break,
                Err(e) => {
                    return Err(IdpError::Row {
                        path: path.into(),
                        row: first_row + records,
                        what: match e.kind() {
                            csv::ErrorKind::UnequalLengths {
                                expected_len, len, ..
                            } => format!(
                                "has {len} fields where the header has {expected_len}; check \
                                 the quoting, or set `idp.delimiter` if `{}` is not the \
                                 delimiter",
                                char::from(delimiter).escape_default()
                            ),
                            _ => e.to_string(),
                        },
                    });
                }
            }
        }
        if records == 0 {
            return Err(IdpError::Empty { path: path.into() });
        }
        Ok(Table {
            path,
            body,
            headers,
            delimiter,
            first_row,
            records,
        })
    }

    /// The index of the first header that one of `names` matches, compared by
    /// [`header_key`].
    pub fn find(&self, names: &[&str]) -> Option<usize> {
        names.iter().find_map(|name| {
            let wanted = header_key(name);
            self.headers.iter().position(|h| header_key(h) == wanted)
        })
    }

    /// Refuses a column the format reads when another header has the same name (compared
    /// by [`header_key`], so `status` and `Status` collide): which of them holds the value
    /// cannot be told, and taking the first would be a guess.
    pub fn refuse_ambiguous(&self, wanted: &[Option<usize>]) -> Result<(), IdpError> {
        for &index in wanted.iter().flatten() {
            let key = header_key(&self.headers[index]);
            let same: Vec<String> = self
                .headers
                .iter()
                .enumerate()
                .filter(|(_, h)| header_key(h) == key)
                .map(|(at, h)| format!("`{h}` (column {})", at + 1))
                .collect();
            if same.len() > 1 {
                return Err(IdpError::Parse {
                    path: self.path.into(),
                    what: format!(
                        "header `{}` is ambiguous: {} name the same column; rename or remove \
                         all but one, so that the export says which one to read",
                        self.headers[index],
                        same.join(" and ")
                    ),
                });
            }
        }
        Ok(())
    }

    /// The headers as a reader would list them: `` `a`, `b` ``.
    pub fn found(&self) -> String {
        self.headers
            .iter()
            .map(|h| format!("`{h}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Reads the columns at `wanted` (header indexes) with polars.
    pub fn load(&self, wanted: &[Option<usize>]) -> Result<Loaded, IdpError> {
        let mut projection: Vec<usize> = wanted.iter().flatten().copied().collect();
        projection.sort_unstable();
        projection.dedup();
        let parse_error = |what: String| IdpError::Parse {
            path: self.path.into(),
            what,
        };
        let frame = CsvReadOptions::default()
            .with_has_header(true)
            .with_infer_schema_length(Some(0))
            .with_projection(Some(Arc::new(projection.clone())))
            .map_parse_options(|o| {
                o.with_separator(self.delimiter)
                    .with_quote_char(Some(b'"'))
                    .with_missing_is_null(true)
            })
            .into_reader_with_file_handle(Cursor::new(self.body.as_bytes()))
            .finish()
            .map_err(|e| parse_error(e.to_string()))?;
        if frame.height() != self.records || frame.width() != projection.len() {
            return Err(parse_error(format!(
                "read {} records of {} columns where the file holds {} records; check its \
                 quoting",
                frame.height(),
                frame.width(),
                self.records
            )));
        }
        let mut position = vec![None; self.headers.len()];
        for (at, index) in projection.iter().enumerate() {
            position[*index] = Some(at);
        }
        Ok(Loaded {
            path: self.path.to_owned(),
            frame,
            position,
        })
    }
}

impl Loaded {
    /// The values of the column at header index `index`.
    pub fn column(&self, index: Option<usize>) -> Result<Column<'_>, IdpError> {
        let Some(at) = index.and_then(|i| self.position.get(i).copied().flatten()) else {
            return Ok(Column(None));
        };
        let values = self.frame.columns()[at]
            .str()
            .map_err(|e| IdpError::Parse {
                path: self.path.clone(),
                what: e.to_string(),
            })?;
        Ok(Column(Some(
            values
                .iter()
                .map(|v| v.map(str::trim).filter(|v| !v.is_empty()))
                .collect(),
        )))
    }
}

/// A header reduced to what identifies it: lowercase letters and digits, without a
/// ` [Required]`-style suffix or a `profile.` prefix.
pub fn header_key(header: &str) -> String {
    let header = header.trim();
    let header = match header.find(" [") {
        Some(i) if header.ends_with(']') => &header[..i],
        _ => header,
    };
    let lower = header.to_lowercase();
    let lower = lower.strip_prefix("profile.").unwrap_or(&lower);
    lower.chars().filter(|c| c.is_alphanumeric()).collect()
}

/// The text without the blank (or whitespace-only) lines at its end, which an export
/// tool or an editor may leave and which hold no record. The header line is kept.
fn trim_trailing_blank_lines(text: &str) -> &str {
    let mut end = text.len();
    loop {
        let head = text[..end].strip_suffix('\n').unwrap_or(&text[..end]);
        let head = head.strip_suffix('\r').unwrap_or(head);
        let Some(newline) = head.rfind('\n') else {
            return &text[..end];
        };
        let last_line = &head[newline + 1..];
        if !last_line.trim().is_empty() {
            return &text[..end];
        }
        end = newline + 1;
    }
}

/// Skips the `#TYPE ...` line PowerShell's `Export-Csv` writes before the header; returns
/// the rest and how many lines were skipped.
fn skip_type_line(text: &str) -> (&str, usize) {
    let head = text.get(..5).unwrap_or("");
    if head.eq_ignore_ascii_case("#type") {
        match text.find('\n') {
            Some(end) => (&text[end + 1..], 1),
            None => ("", 1),
        }
    } else {
        (text, 0)
    }
}

/// The delimiter that occurs most often outside quotes in the header line: `,` `;` or
/// tab, `,` on a tie or when there is none.
fn sniff(text: &str) -> u8 {
    let mut counts = [0usize; DELIMITERS.len()];
    let mut quoted = false;
    for b in text.bytes() {
        match b {
            b'"' => quoted = !quoted,
            b'\n' | b'\r' if !quoted => break,
            _ if !quoted => {
                if let Some(i) = DELIMITERS.iter().position(|d| *d == b) {
                    counts[i] += 1;
                }
            }
            _ => {}
        }
    }
    let mut best = 0;
    for i in 1..DELIMITERS.len() {
        if counts[i] > counts[best] {
            best = i;
        }
    }
    DELIMITERS[best]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(table: &Table<'_>, names: &[&str]) -> Vec<Vec<Option<String>>> {
        let wanted: Vec<Option<usize>> = names.iter().map(|n| table.find(&[n])).collect();
        let loaded = table.load(&wanted).unwrap();
        wanted
            .iter()
            .map(|i| {
                let column = loaded.column(*i).unwrap();
                (0..table.records)
                    .map(|r| column.at(r).map(str::to_owned))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn the_delimiter_is_sniffed_outside_quotes_from_the_header_line() {
        assert_eq!(sniff("a,b,c\n1;2;3;4;5\n"), b',');
        assert_eq!(sniff("a;b;c\n"), b';');
        assert_eq!(sniff("a\tb\tc\r\n"), b'\t');
        assert_eq!(sniff("\"a,b,c\";d;e\n"), b';');
        assert_eq!(sniff("email\n"), b',');
    }

    #[test]
    fn a_powershell_type_line_is_skipped_and_rows_count_it() {
        let text =
            "#TYPE Selected.Microsoft.Graph.User\r\n\"mail\",\"id\"\r\n\"a@x.example\",\"1\"\r\n";
        let table = Table::check("t.csv", text, None).unwrap();
        assert_eq!(table.headers, ["mail", "id"]);
        assert_eq!(table.first_row, 3);
        assert_eq!(values(&table, &["id"]), [[Some("1".to_owned())]]);
    }

    #[test]
    fn semicolons_quoted_newlines_and_crlf_read_exactly() {
        let text = "email;note;id\r\na@x.example;\"two\r\nlines; and a \"\"quote\"\"\";007\r\nb@x.example;;0100\r\n";
        let table = Table::check("t.csv", text, None).unwrap();
        assert_eq!(table.delimiter, b';');
        assert_eq!(table.records, 2);
        let v = values(&table, &["note", "id"]);
        assert_eq!(
            v[0],
            [Some("two\r\nlines; and a \"quote\"".to_owned()), None]
        );
        assert_eq!(v[1], [Some("007".to_owned()), Some("0100".to_owned())]);
    }

    #[test]
    fn a_configured_delimiter_overrides_the_sniffed_one() {
        let text = "email|name\na@x.example|Doe, Jane; Dr\n";
        let table = Table::check("t.csv", text, Some(b'|')).unwrap();
        assert_eq!(
            values(&table, &["name"])[0],
            [Some("Doe, Jane; Dr".to_owned())]
        );
    }

    #[test]
    fn a_ragged_row_is_named_with_the_delimiter_hint() {
        let err = Table::check("t.csv", "#TYPE X\nemail,status\na,b\nc,d,e\n", None)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("row 4"), "{err}");
        assert!(err.contains("3 fields where the header has 2"), "{err}");
        assert!(err.contains("idp.delimiter"), "{err}");
    }

    #[test]
    fn a_header_without_records_is_empty() {
        let err = Table::check("t.csv", "email,status\r\n", None)
            .err()
            .unwrap();
        assert!(matches!(err, IdpError::Empty { .. }), "{err}");
        let err = Table::check("t.csv", "", None).err().unwrap();
        assert!(matches!(err, IdpError::Empty { .. }), "{err}");
    }

    #[test]
    fn headers_match_by_name_ignoring_case_suffixes_and_punctuation() {
        for (header, name) in [
            ("Email Address [Required]", "email address"),
            ("Status [READ ONLY]", "Status"),
            ("profile.secondEmail", "secondEmail"),
            ("Employee #", "employee"),
            (" User_Principal_Name ", "userPrincipalName"),
        ] {
            assert_eq!(header_key(header), header_key(name), "{header}");
        }
    }

    #[test]
    fn duplicate_and_empty_headers_still_read_by_position() {
        let text = "email,,email,x\na@x.example,1,b@x.example,2\n";
        let table = Table::check("t.csv", text, None).unwrap();
        let loaded = table.load(&[Some(0), Some(1), Some(2)]).unwrap();
        assert_eq!(loaded.column(Some(2)).unwrap().at(0), Some("b@x.example"));
        assert_eq!(loaded.column(Some(1)).unwrap().at(0), Some("1"));
        assert!(!loaded.column(Some(3)).unwrap().present());
    }
}
