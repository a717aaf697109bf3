//! The recovery of the vendor's printed examples (see the module docs of [`super`]): embedded
//! JSON texts printed with raw quotes, unwrapped so the strict parse can run again.

use serde::de::IgnoredAny;

use super::MAX_RECOVERY_FAILURES;

/// The body with embedded JSON strings unwrapped (see the module docs), or `None` when no value
/// qualified.
pub(super) fn recover(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let mut out: Option<Vec<u8>> = None;
    let mut failures = 0;
    let mut after_colon = false;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                let opens_bracket = matches!(b.get(skip_whitespace(b, i + 1)), Some(b'{' | b'['));
                if after_colon && opens_bracket && failures < MAX_RECOVERY_FAILURES {
                    if let Some(close) = embedded_json(b, i) {
                        let buf = out.get_or_insert_with(|| b.to_vec());
                        // Blanks, not removal: later line and column numbers stay true.
                        buf[i] = b' ';
                        buf[close] = b' ';
                        i = close + 1;
                        after_colon = false;
                        continue;
                    }
                    failures += 1;
                }
                i = string_end(b, i);
                after_colon = false;
            }
            b':' => {
                after_colon = true;
                i += 1;
            }
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            _ => {
                after_colon = false;
                i += 1;
            }
        }
    }
    out.and_then(|buf| String::from_utf8(buf).ok())
}

/// For a `"` at `quote` opening `{...}` or `[...]` that is valid JSON and followed by the closing
/// `"`, the index of that closing quote.
pub(super) fn embedded_json(b: &[u8], quote: usize) -> Option<usize> {
    let start = skip_whitespace(b, quote + 1);
    if !matches!(b.get(start), Some(b'{' | b'[')) {
        return None;
    }
    let end = balanced_end(b, start)?;
    let close = skip_whitespace(b, end);
    if b.get(close) != Some(&b'"') {
        return None;
    }
    let inner = std::str::from_utf8(b.get(start..end)?).ok()?;
    serde_json::from_str::<IgnoredAny>(inner).ok()?;
    Some(close)
}

pub(super) fn skip_whitespace(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The index just past the bracket that closes the one at `start`, skipping JSON strings.
pub(super) fn balanced_end(b: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    while i < b.len() {
        match b[i] {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            b'"' => {
                i = string_end(b, i);
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The index just past the JSON string opening at `quote` (or the end of the input).
pub(super) fn string_end(b: &[u8], quote: usize) -> usize {
    let mut i = quote + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}
