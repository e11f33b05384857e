//! A small zip writer for the review mail: the report files, deflated into one archive
//! when the message would be too large with them attached as they are.
//!
//! It writes what every unzip tool reads: one deflated entry per file, a central
//! directory, no zip64 (an entry or archive over 4 GiB is an error, far beyond any mail),
//! and entry times in the DOS format taken from the run, so the same report zips to the
//! same bytes.

use std::io::Write;

use chrono::{DateTime, Datelike, Timelike, Utc};
use flate2::Compression;
use flate2::write::DeflateEncoder;

/// Why an archive could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ZipError {
    #[error("cannot compress `{name}`: {cause}")]
    Deflate { name: String, cause: std::io::Error },
    #[error("`{name}` is too large for a zip archive without zip64 ({bytes} bytes)")]
    TooLarge { name: String, bytes: u64 },
    #[error("too many files for one zip archive ({count}, at most 65535)")]
    TooManyFiles { count: usize },
}

const LOCAL_HEADER: u32 = 0x0403_4b50;
const CENTRAL_HEADER: u32 = 0x0201_4b50;
const END_OF_CENTRAL_DIRECTORY: u32 = 0x0605_4b50;
/// Version 2.0: deflate.
const VERSION_NEEDED: u16 = 20;
/// Made by Unix (3), spec version 2.0, so the permission bits below are read.
const VERSION_MADE_BY: u16 = (3 << 8) | 20;
const METHOD_DEFLATE: u16 = 8;
/// `-rw-------`: the report holds personal data.
const UNIX_MODE: u32 = 0o100_600;

/// Zips `files` (name, bytes) in the given order, each entry stamped with `modified`.
pub fn archive(files: &[(String, Vec<u8>)], modified: DateTime<Utc>) -> Result<Vec<u8>, ZipError> {
    if files.len() > usize::from(u16::MAX) {
        return Err(ZipError::TooManyFiles { count: files.len() });
    }
    let (time, date) = dos_time(modified);
    let mut out = Vec::new();
    let mut central = Vec::new();

    for (name, content) in files {
        let offset = fits(name, out.len() as u64)?;
        let size = fits(name, content.len() as u64)?;
        let crc = crc32fast::hash(content);
        let mut encoder = DeflateEncoder::new(Vec::new(), Compression::default());
        let compressed = encoder
            .write_all(content)
            .and_then(|()| encoder.finish())
            .map_err(|cause| ZipError::Deflate {
                name: name.clone(),
                cause,
            })?;
        let compressed_size = fits(name, compressed.len() as u64)?;
        let name_len = u16::try_from(name.len()).map_err(|_| ZipError::TooLarge {
            name: name.clone(),
            bytes: name.len() as u64,
        })?;

        put32(&mut out, LOCAL_HEADER);
        put16(&mut out, VERSION_NEEDED);
        put16(&mut out, 0); // flags
        put16(&mut out, METHOD_DEFLATE);
        put16(&mut out, time);
        put16(&mut out, date);
        put32(&mut out, crc);
        put32(&mut out, compressed_size);
        put32(&mut out, size);
        put16(&mut out, name_len);
        put16(&mut out, 0); // extra field length
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&compressed);

        put32(&mut central, CENTRAL_HEADER);
        put16(&mut central, VERSION_MADE_BY);
        put16(&mut central, VERSION_NEEDED);
        put16(&mut central, 0); // flags
        put16(&mut central, METHOD_DEFLATE);
        put16(&mut central, time);
        put16(&mut central, date);
        put32(&mut central, crc);
        put32(&mut central, compressed_size);
        put32(&mut central, size);
        put16(&mut central, name_len);
        put16(&mut central, 0); // extra field length
        put16(&mut central, 0); // comment length
        put16(&mut central, 0); // disk number
        put16(&mut central, 0); // internal attributes
        put32(&mut central, UNIX_MODE << 16);
        put32(&mut central, offset);
        central.extend_from_slice(name.as_bytes());
    }

    let central_offset = fits("the central directory", out.len() as u64)?;
    let central_size = fits("the central directory", central.len() as u64)?;
    out.extend_from_slice(&central);
    let count = files.len() as u16;
    put32(&mut out, END_OF_CENTRAL_DIRECTORY);
    put16(&mut out, 0); // this disk
    put16(&mut out, 0); // disk of the central directory
    put16(&mut out, count);
    put16(&mut out, count);
    put32(&mut out, central_size);
    put32(&mut out, central_offset);
    put16(&mut out, 0); // comment length
    fits("the archive", out.len() as u64)?;
    Ok(out)
}

fn fits(name: &str, bytes: u64) -> Result<u32, ZipError> {
    u32::try_from(bytes).map_err(|_| ZipError::TooLarge {
        name: name.to_string(),
        bytes,
    })
}

fn put16(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// MS-DOS time and date: 2-second resolution, years 1980 to 2107.
fn dos_time(at: DateTime<Utc>) -> (u16, u16) {
    let year = at.year().clamp(1980, 2107) as u16;
    let time = ((at.hour() as u16) << 11) | ((at.minute() as u16) << 5) | (at.second() as u16 / 2);
    let date = ((year - 1980) << 9) | ((at.month() as u16) << 5) | at.day() as u16;
    (time, date)
}

#[cfg(test)]
mod tests {
    use super::*;

    use flate2::read::DeflateDecoder;
    use std::io::Read;

    fn u16_at(bytes: &[u8], at: usize) -> u16 {
        u16::from_le_bytes([bytes[at], bytes[at + 1]])
    }

    fn u32_at(bytes: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
    }

    /// Reads an archive back through its central directory, checking every CRC.
    fn read_back(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
        let end = archive.len() - 22;
        assert_eq!(u32_at(archive, end), END_OF_CENTRAL_DIRECTORY);
        let count = u16_at(archive, end + 10) as usize;
        let mut at = u32_at(archive, end + 16) as usize;
        let mut files = Vec::new();
        for _ in 0..count {
            assert_eq!(u32_at(archive, at), CENTRAL_HEADER);
            let crc = u32_at(archive, at + 16);
            let compressed = u32_at(archive, at + 20) as usize;
            let size = u32_at(archive, at + 24) as usize;
            let name_len = u16_at(archive, at + 28) as usize;
            let local = u32_at(archive, at + 42) as usize;
            let name = String::from_utf8(archive[at + 46..at + 46 + name_len].to_vec()).unwrap();

            assert_eq!(u32_at(archive, local), LOCAL_HEADER);
            let data = local + 30 + u16_at(archive, local + 26) as usize;
            let mut content = Vec::new();
            DeflateDecoder::new(&archive[data..data + compressed])
                .read_to_end(&mut content)
                .unwrap();
            assert_eq!(content.len(), size, "{name}");
            assert_eq!(crc32fast::hash(&content), crc, "{name}");
            files.push((name, content));
            at += 46 + name_len;
        }
        files
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
    fn dos_time_keeps_the_date_and_halves_the_seconds() {
        let at = "2026-11-30T06:05:13Z".parse().unwrap();

        let (time, date) = dos_time(at);

        assert_eq!(date >> 9, 2026 - 1980);
        assert_eq!((date >> 5) & 0xf, 11);
        assert_eq!(date & 0x1f, 30);
        assert_eq!(time >> 11, 6);
        assert_eq!((time >> 5) & 0x3f, 5);
        assert_eq!(time & 0x1f, 6);
    }
}
