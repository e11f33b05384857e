//! The report files zipped into one archive, for a review mail that would be too large
//! with them attached as they are. One deflated entry per file, owner-only permission
//! bits, and entry times taken from the run, so the same report zips to the same bytes.

use std::io::{Cursor, Write};

use chrono::{DateTime, Datelike, Timelike, Utc};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

/// Why an archive could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot zip `{name}`: {cause}")]
pub struct ZipError {
    name: String,
    cause: String,
}

/// Zips `files` (name, bytes) in the given order, each entry stamped with `modified`.
pub fn archive(files: &[(String, Vec<u8>)], modified: DateTime<Utc>) -> Result<Vec<u8>, ZipError> {
    let fail = |name: &str, cause: &dyn std::fmt::Display| ZipError {
        name: name.to_owned(),
        cause: cause.to_string(),
    };
    // Zip times run from 1980 to 2107; outside that range the entry keeps the default.
    let time = u16::try_from(modified.year())
        .ok()
        .and_then(|year| {
            zip::DateTime::from_date_and_time(
                year,
                modified.month() as u8,
                modified.day() as u8,
                modified.hour() as u8,
                modified.minute() as u8,
                modified.second() as u8,
            )
            .ok()
        })
        .unwrap_or_default();
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .last_modified_time(time)
        // -rw-------: the report holds personal data.
        .unix_permissions(0o600);

    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    for (name, content) in files {
        writer
            .start_file(name.as_str(), options)
            .map_err(|e| fail(name, &e))?;
        writer.write_all(content).map_err(|e| fail(name, &e))?;
    }
    let cursor = writer.finish().map_err(|e| fail("archive", &e))?;
    Ok(cursor.into_inner())
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn read_back(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut zip = zip::ZipArchive::new(Cursor::new(archive)).unwrap();
        (0..zip.len())
            .map(|i| {
                let mut entry = zip.by_index(i).unwrap();
                let mut content = Vec::new();
                entry.read_to_end(&mut content).unwrap();
                assert_eq!(entry.unix_mode().map(|m| m & 0o777), Some(0o600));
                (entry.name().unwrap().into_owned(), content)
            })
            .collect()
    }

    #[test]
    fn every_file_comes_back_from_the_archive_byte_for_byte() {
        let files = vec![
            ("report.html".to_string(), b"<html>\n".repeat(5000)),
            ("findings.csv".to_string(), b"kind,key\nshadow,a\n".to_vec()),
            ("empty.csv".to_string(), Vec::new()),
        ];

        let archive = archive(&files, Utc::now()).unwrap();

        assert_eq!(read_back(&archive), files);
        assert!(archive.len() < 5000, "repetitive text compresses well");
    }

    #[test]
    fn the_same_files_and_time_give_the_same_bytes() {
        let at = "2026-11-30T06:00:13Z".parse().unwrap();
        let files = vec![("a.csv".to_string(), b"x,y\n1,2\n".to_vec())];

        assert_eq!(archive(&files, at).unwrap(), archive(&files, at).unwrap());
    }

    #[test]
    fn entries_carry_the_run_time() {
        let at: DateTime<Utc> = "2026-11-30T06:05:12Z".parse().unwrap();
        let bytes = archive(&[("a.csv".to_string(), b"x".to_vec())], at).unwrap();
        let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
        let entry = zip.by_index(0).unwrap();
        let time = entry.last_modified().unwrap();
        assert_eq!(
            (
                time.year(),
                time.month(),
                time.day(),
                time.hour(),
                time.minute(),
                time.second()
            ),
            (2026, 11, 30, 6, 5, 12)
        );
    }
}
