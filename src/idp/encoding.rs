//! Turns the export's bytes into UTF-8 text, exactly or not at all.
//!
//! A byte-order mark decides first: UTF-8 (stripped), UTF-16LE or UTF-16BE. Without one,
//! the configured `idp.encoding` applies: UTF-8 (the default), UTF-16 of either order, or
//! Windows-1252. Nothing is ever replaced: a byte that does not decode is an error that
//! names its offset in the file.

use std::borrow::Cow;

/// The encodings an export can be read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    Utf16Le,
    Utf16Be,
    Cp1252,
}

impl Encoding {
    pub const NAMES: &'static str = "utf-8, utf-16le, utf-16be, cp1252";

    pub fn parse(s: &str) -> Option<Encoding> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "" | "utf-8" | "utf8" => Some(Encoding::Utf8),
            "utf-16le" | "utf16le" => Some(Encoding::Utf16Le),
            "utf-16be" | "utf16be" => Some(Encoding::Utf16Be),
            "cp1252" | "windows-1252" => Some(Encoding::Cp1252),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Utf8 => "utf-8",
            Encoding::Utf16Le => "utf-16le",
            Encoding::Utf16Be => "utf-16be",
            Encoding::Cp1252 => "cp1252",
        }
    }
}

/// A byte that does not decode: where it is in the file and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub offset: usize,
    pub what: String,
}

/// The decoded text and the encoding it was read in.
#[derive(Debug)]
pub struct Decoded<'a> {
    pub text: Cow<'a, str>,
    pub encoding: Encoding,
}

/// Decodes `bytes`: a byte-order mark wins over `configured`.
pub fn decode(bytes: &[u8], configured: Encoding) -> Result<Decoded<'_>, DecodeError> {
    let (encoding, skip) = if bytes.starts_with(b"\xEF\xBB\xBF") {
        (Encoding::Utf8, 3)
    } else if bytes.starts_with(b"\xFF\xFE") {
        (Encoding::Utf16Le, 2)
    } else if bytes.starts_with(b"\xFE\xFF") {
        (Encoding::Utf16Be, 2)
    } else {
        (configured, 0)
    };
    let body = &bytes[skip..];
    let text = match encoding {
        Encoding::Utf8 => Cow::Borrowed(utf8(body, skip)?),
        Encoding::Utf16Le => Cow::Owned(utf16(body, skip, u16::from_le_bytes)?),
        Encoding::Utf16Be => Cow::Owned(utf16(body, skip, u16::from_be_bytes)?),
        Encoding::Cp1252 => Cow::Owned(cp1252(body, skip)?),
    };
    if let Some(at) = text.find('\0') {
        // Only UTF-16 read as UTF-8 puts NULs in a text export.
        let offset = if encoding == Encoding::Utf8 {
            skip + at
        } else {
            skip
        };
        return Err(DecodeError {
            offset,
            what: format!(
                "holds a NUL character, which no text export does: it looks like UTF-16 \
                 without a byte-order mark (read as {}); set `idp.encoding` to `utf-16le` or \
                 `utf-16be`",
                encoding.as_str()
            ),
        });
    }
    Ok(Decoded { text, encoding })
}

fn utf8(body: &[u8], skip: usize) -> Result<&str, DecodeError> {
    std::str::from_utf8(body).map_err(|e| DecodeError {
        offset: skip + e.valid_up_to(),
        what: "is not valid UTF-8; export it as UTF-8, or set `idp.encoding` to the \
               encoding it is in (cp1252 for Windows-1252)"
            .into(),
    })
}

fn utf16(body: &[u8], skip: usize, unit: fn([u8; 2]) -> u16) -> Result<String, DecodeError> {
    if body.len() % 2 == 1 {
        return Err(DecodeError {
            offset: skip + body.len() - 1,
            what: "is not valid UTF-16: the file ends in the middle of a character; check \
                   that the export finished"
                .into(),
        });
    }
    let units = body.chunks_exact(2).map(|pair| unit([pair[0], pair[1]]));
    let mut text = String::with_capacity(body.len() / 2);
    let mut offset = skip;
    for decoded in char::decode_utf16(units) {
        match decoded {
            Ok(c) => {
                text.push(c);
                offset += c.len_utf16() * 2;
            }
            Err(_) => {
                return Err(DecodeError {
                    offset,
                    what: "is not valid UTF-16: a surrogate without its pair; re-export the \
                           file as UTF-8 or UTF-16"
                        .into(),
                });
            }
        }
    }
    Ok(text)
}

/// Windows-1252's characters for the bytes 0x80 to 0x9F; `None` where it defines none.
const CP1252_HIGH: [Option<char>; 32] = [
    Some('\u{20AC}'),
    None,
    Some('\u{201A}'),
    Some('\u{0192}'),
    Some('\u{201E}'),
    Some('\u{2026}'),
    Some('\u{2020}'),
    Some('\u{2021}'),
    Some('\u{02C6}'),
    Some('\u{2030}'),
    Some('\u{0160}'),
    Some('\u{2039}'),
    Some('\u{0152}'),
    None,
    Some('\u{017D}'),
    None,
    None,
    Some('\u{2018}'),
    Some('\u{2019}'),
    Some('\u{201C}'),
    Some('\u{201D}'),
    Some('\u{2022}'),
    Some('\u{2013}'),
    Some('\u{2014}'),
    Some('\u{02DC}'),
    Some('\u{2122}'),
    Some('\u{0161}'),
    Some('\u{203A}'),
    Some('\u{0153}'),
    None,
    Some('\u{017E}'),
    Some('\u{0178}'),
];

fn cp1252(body: &[u8], skip: usize) -> Result<String, DecodeError> {
    let mut text = String::with_capacity(body.len());
    for (i, &b) in body.iter().enumerate() {
        let c = match b {
            0x80..=0x9F => CP1252_HIGH[usize::from(b - 0x80)].ok_or_else(|| DecodeError {
                offset: skip + i,
                what: format!(
                    "byte 0x{b:02X} is not a Windows-1252 character; check `idp.encoding`"
                ),
            })?,
            // ASCII and 0xA0..=0xFF are the Unicode code points of the same number.
            _ => char::from(b),
        };
        text.push(c);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16le(text: &str, bom: bool) -> Vec<u8> {
        let mut out = if bom { vec![0xFF, 0xFE] } else { vec![] };
        out.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
        out
    }

    #[test]
    fn a_utf8_bom_is_stripped() {
        let d = decode(b"\xEF\xBB\xBFemail\n", Encoding::Utf8).unwrap();
        assert_eq!(d.text, "email\n");
        assert_eq!(d.encoding, Encoding::Utf8);
    }

    #[test]
    fn utf16_is_recognized_by_its_bom_in_either_byte_order() {
        let le = utf16le("Émile,Zoë\n", true);
        assert_eq!(decode(&le, Encoding::Utf8).unwrap().text, "Émile,Zoë\n");
        let mut be = vec![0xFE, 0xFF];
        be.extend("Émile,Zoë\n".encode_utf16().flat_map(u16::to_be_bytes));
        let d = decode(&be, Encoding::Cp1252).unwrap();
        assert_eq!(d.text, "Émile,Zoë\n");
        assert_eq!(d.encoding, Encoding::Utf16Be);
    }

    #[test]
    fn utf16_without_a_bom_is_refused_unless_configured() {
        let bytes = utf16le("email\n", false);
        let err = decode(&bytes, Encoding::Utf8).unwrap_err();
        assert_eq!(err.offset, 1);
        assert!(err.what.contains("utf-16le"), "{}", err.what);
        assert_eq!(decode(&bytes, Encoding::Utf16Le).unwrap().text, "email\n");
    }

    #[test]
    fn an_unpaired_surrogate_names_its_offset() {
        let mut bytes = utf16le("ab", true);
        bytes.extend([0x00, 0xD8, b'c', 0x00]);
        assert_eq!(decode(&bytes, Encoding::Utf8).unwrap_err().offset, 6);
    }

    #[test]
    fn invalid_utf8_is_never_read_lossily_and_counts_the_bom_in_its_offset() {
        let err = decode(b"\xEF\xBB\xBFab\xE9c", Encoding::Utf8).unwrap_err();
        assert_eq!(err.offset, 5);
        assert!(err.what.contains("cp1252"), "{}", err.what);
    }

    #[test]
    fn cp1252_is_read_only_when_configured() {
        let bytes = b"Ren\xE9e \x80 \x93x\x94";
        assert!(decode(bytes, Encoding::Utf8).is_err());
        let d = decode(bytes, Encoding::Cp1252).unwrap();
        assert_eq!(d.text, "Renée € \u{201C}x\u{201D}");
    }

    #[test]
    fn an_undefined_cp1252_byte_names_its_offset() {
        let err = decode(b"ab\x81", Encoding::Cp1252).unwrap_err();
        assert_eq!(err.offset, 2);
        assert!(err.what.contains("0x81"), "{}", err.what);
    }

    #[test]
    fn encoding_names_parse_leniently() {
        for (name, e) in [
            ("UTF-8", Encoding::Utf8),
            ("utf_16le", Encoding::Utf16Le),
            ("UTF-16BE", Encoding::Utf16Be),
            ("windows-1252", Encoding::Cp1252),
        ] {
            assert_eq!(Encoding::parse(name), Some(e), "{name}");
        }
        assert_eq!(Encoding::parse("latin9"), None);
    }
}
