//! A JSON text written again exactly as JavaScript's `JSON.stringify(JSON.parse(text))` writes
//! it, for the vendor's signature: its sample signs `JSON.stringify(req.body)`, the parsed body
//! serialised again, not the bytes on the wire.
//!
//! What the two ECMAScript operations do, and so what this does (ECMA-262, `JSON.parse`,
//! `JSON.stringify`, `SerializeJSONObject`, `QuoteJSONString`, `Number::toString`,
//! `OrdinaryOwnPropertyKeys`):
//! - No whitespace between tokens; members and elements in their order, except that an object
//!   lists its array-index keys (`"0"`, `"7"`: canonical integers up to 2^32 - 2) first, in
//!   ascending numeric order, then the other keys in the order they first appeared. A repeated
//!   key keeps its first place and takes its last value.
//! - Strings as UTF-16 code units: `"`, `\`, backspace, form feed, line feed, carriage return
//!   and tab as their two-character escapes, the other code units below U+0020 and any lone
//!   surrogate as `\u` and four lower-case hex digits, everything else (`/`, U+2028, non-ASCII)
//!   as the character itself; the text is hashed as UTF-8, as Node's `hmac.update` does.
//! - Numbers parsed to the nearest double, then written as the shortest decimal that reads back
//!   to it: `1.0` is `1`, `-0` is `0`, `1e21` is `1e+21`, `0.0000001` is `1e-7`,
//!   `123456789012345678901` is `123456789012345680000`; one too large for a double is `null`.
//!
//! Anything `JSON.parse` would refuse gives `None` (nothing to compare a signature with), and
//! so does nesting deeper than `MAX_DEPTH`, so no body can exhaust the stack.

use std::collections::HashMap;

/// Deepest nesting re-serialised; the decoder's parser refuses deeper bodies anyway (128).
const MAX_DEPTH: usize = 128;

/// `JSON.stringify(JSON.parse(text))` as UTF-8 bytes, or `None` when `JSON.parse` would throw.
/// A leading byte order mark is dropped first, as Node's body parsers do.
pub fn stringify(text: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(text).ok()?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut parser = Parser {
        bytes: text.as_bytes(),
        at: 0,
    };
    let mut out = Vec::with_capacity(text.len());
    parser.skip_space();
    parser.value(&mut out, 0)?;
    parser.skip_space();
    (parser.at == parser.bytes.len()).then_some(out)
}

struct Parser<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    fn literal(&mut self, word: &'static [u8], out: &mut Vec<u8>) -> Option<()> {
        let end = self.at + word.len();
        (self.bytes.get(self.at..end)? == word).then(|| {
            self.at = end;
            out.extend_from_slice(word);
        })
    }

    /// One value, written to `out`; the parser stands after it.
    fn value(&mut self, out: &mut Vec<u8>, depth: usize) -> Option<()> {
        match self.peek()? {
            b'{' => self.object(out, depth + 1),
            b'[' => self.array(out, depth + 1),
            b'"' => {
                let units = self.string()?;
                quote(&units, out);
                Some(())
            }
            b't' => self.literal(b"true", out),
            b'f' => self.literal(b"false", out),
            b'n' => self.literal(b"null", out),
            b'-' | b'0'..=b'9' => self.number(out),
            _ => None,
        }
    }

    fn object(&mut self, out: &mut Vec<u8>, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.expect(b'{')?;
        // Each key with its serialised value, in the order of first appearance.
        let mut members: Vec<(Vec<u16>, Vec<u8>)> = Vec::new();
        let mut seen: HashMap<Vec<u16>, usize> = HashMap::new();
        self.skip_space();
        if self.peek()? == b'}' {
            self.at += 1;
            out.extend_from_slice(b"{}");
            return Some(());
        }
        loop {
            self.skip_space();
            if self.peek()? != b'"' {
                return None;
            }
            let key = self.string()?;
            self.skip_space();
            self.expect(b':')?;
            self.skip_space();
            let mut value = Vec::new();
            self.value(&mut value, depth)?;
            match seen.get(&key) {
                Some(&i) => members[i].1 = value,
                None => {
                    seen.insert(key.clone(), members.len());
                    members.push((key, value));
                }
            }
            self.skip_space();
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    break;
                }
                _ => return None,
            }
        }
        // Array indices first, ascending; a stable sort keeps the others in their order.
        members.sort_by_key(|(key, _)| array_index(key).map_or((1, 0), |i| (0, i)));
        out.push(b'{');
        for (i, (key, value)) in members.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            quote(key, out);
            out.push(b':');
            out.extend_from_slice(value);
        }
        out.push(b'}');
        Some(())
    }

    fn array(&mut self, out: &mut Vec<u8>, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.expect(b'[')?;
        out.push(b'[');
        self.skip_space();
        if self.peek()? == b']' {
            self.at += 1;
            out.push(b']');
            return Some(());
        }
        loop {
            self.skip_space();
            self.value(out, depth)?;
            self.skip_space();
            match self.peek()? {
                b',' => {
                    self.at += 1;
                    out.push(b',');
                }
                b']' => {
                    self.at += 1;
                    out.push(b']');
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// A string's UTF-16 code units, escapes undone (a `\u` escape may leave a lone surrogate,
    /// as in JavaScript).
    fn string(&mut self) -> Option<Vec<u16>> {
        self.expect(b'"')?;
        let mut units = Vec::new();
        loop {
            let start = self.at;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.at += 1;
            }
            // Runs of plain text: the input is UTF-8 and cut only at ASCII bytes.
            let run = std::str::from_utf8(&self.bytes[start..self.at]).ok()?;
            units.extend(run.encode_utf16());
            match self.peek()? {
                b'"' => {
                    self.at += 1;
                    return Some(units);
                }
                b'\\' => {
                    self.at += 1;
                    let escaped = self.peek()?;
                    self.at += 1;
                    units.push(match escaped {
                        b'"' => 0x22,
                        b'\\' => 0x5c,
                        b'/' => 0x2f,
                        b'b' => 0x08,
                        b'f' => 0x0c,
                        b'n' => 0x0a,
                        b'r' => 0x0d,
                        b't' => 0x09,
                        b'u' => {
                            let hex = self.bytes.get(self.at..self.at + 4)?;
                            self.at += 4;
                            let hex = std::str::from_utf8(hex).ok()?;
                            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                                return None;
                            }
                            u16::from_str_radix(hex, 16).ok()?
                        }
                        _ => return None,
                    });
                }
                // A raw control character: JSON.parse refuses it.
                _ => return None,
            }
        }
    }

    fn number(&mut self, out: &mut Vec<u8>) -> Option<()> {
        let start = self.at;
        let digits = |p: &mut Self| {
            let from = p.at;
            while matches!(p.peek(), Some(b'0'..=b'9')) {
                p.at += 1;
            }
            p.at - from
        };
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek()? {
            b'0' => self.at += 1,
            b'1'..=b'9' => {
                digits(self);
            }
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            if digits(self) == 0 {
                return None;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if digits(self) == 0 {
                return None;
            }
        }
        let text = std::str::from_utf8(&self.bytes[start..self.at]).ok()?;
        // Rust's parse rounds to the nearest double, as JavaScript's StringToNumber does.
        let value: f64 = text.parse().ok()?;
        number_to_string(value, out);
        Some(())
    }
}

/// The index of an array-index key: the canonical decimal form of an integer up to 2^32 - 2.
fn array_index(key: &[u16]) -> Option<u64> {
    if key.is_empty() || key.len() > 10 || (key.len() > 1 && key[0] == u16::from(b'0')) {
        return None;
    }
    let mut n: u64 = 0;
    for &unit in key {
        let digit = unit.checked_sub(u16::from(b'0')).filter(|d| *d <= 9)?;
        n = n * 10 + u64::from(digit);
    }
    (n <= 4_294_967_294).then_some(n)
}

/// `QuoteJSONString`: the code units as a JSON string literal, as UTF-8.
fn quote(units: &[u16], out: &mut Vec<u8>) {
    out.push(b'"');
    for decoded in char::decode_utf16(units.iter().copied()) {
        match decoded {
            Ok(c) => match c {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                '\u{08}' => out.extend_from_slice(b"\\b"),
                '\u{0c}' => out.extend_from_slice(b"\\f"),
                '\n' => out.extend_from_slice(b"\\n"),
                '\r' => out.extend_from_slice(b"\\r"),
                '\t' => out.extend_from_slice(b"\\t"),
                c if (c as u32) < 0x20 => unicode_escape(c as u16, out),
                c => {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            },
            Err(lone) => unicode_escape(lone.unpaired_surrogate(), out),
        }
    }
    out.push(b'"');
}

fn unicode_escape(unit: u16, out: &mut Vec<u8>) {
    out.extend_from_slice(format!("\\u{unit:04x}").as_bytes());
}

/// `Number::toString(x)` as `JSON.stringify` writes it: non-finite values as `null`.
fn number_to_string(x: f64, out: &mut Vec<u8>) {
    if !x.is_finite() {
        out.extend_from_slice(b"null");
        return;
    }
    if x == 0.0 {
        // Both zeros.
        out.push(b'0');
        return;
    }
    if x < 0.0 {
        out.push(b'-');
    }
    // Rust's shortest round-trip digits: "d.ddde±x" gives the digits and the exponent.
    let scientific = format!("{:e}", x.abs());
    let (mantissa, exponent) = scientific
        .split_once('e')
        .expect("LowerExp always writes an exponent");
    let digits: Vec<u8> = mantissa.bytes().filter(|b| *b != b'.').collect();
    let exponent: i32 = exponent
        .parse()
        .expect("LowerExp writes an integer exponent");
    // In the spec's terms: x = digits × 10^(n - k), with k digits.
    let k = digits.len() as i32;
    let n = exponent + 1;
    if k <= n && n <= 21 {
        out.extend_from_slice(&digits);
        out.extend(std::iter::repeat_n(b'0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        out.extend_from_slice(&digits[..n as usize]);
        out.push(b'.');
        out.extend_from_slice(&digits[n as usize..]);
    } else if -6 < n && n <= 0 {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', (-n) as usize));
        out.extend_from_slice(&digits);
    } else {
        let e = n - 1;
        out.push(digits[0]);
        if k > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        out.push(b'e');
        out.push(if e < 0 { b'-' } else { b'+' });
        out.extend_from_slice(e.unsigned_abs().to_string().as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn js(text: &str) -> Option<String> {
        stringify(text.as_bytes()).map(|b| String::from_utf8(b).expect("UTF-8"))
    }

    /// Each expected text is what Node 20's `JSON.stringify(JSON.parse(input))` printed.
    #[test]
    fn writes_what_json_stringify_writes() {
        let cases = [
            (
                "spacing",
                "{ \"a\" : 1 ,\n\t\"b\" : [ 1 , 2 ] }",
                r#"{"a":1,"b":[1,2]}"#,
            ),
            (
                "empty containers",
                r#"{ "o" : { } , "a" : [ ] }"#,
                r#"{"o":{},"a":[]}"#,
            ),
            ("literals", r#"[true , false , null]"#, "[true,false,null]"),
            ("one point zero", "[1.0, 1.50, 100, 0.1]", "[1,1.5,100,0.1]"),
            ("zeros", "[-0, 0, -0.0, 0e5]", "[0,0,0,0]"),
            (
                "exponents",
                "[1e21, 1e20, 1E+2, 1e-7, 1.5e-7, 0.000001, 2e-6]",
                "[1e+21,100000000000000000000,100,1e-7,1.5e-7,0.000001,0.000002]",
            ),
            (
                "long integers",
                "[123456789012345678901, 9007199254740993, -12345678901234567890123]",
                "[123456789012345680000,9007199254740992,-1.2345678901234568e+22]",
            ),
            ("too large", "[1e400, -1e400, 1e-400]", "[null,null,0]"),
            (
                "shortest digits",
                "[0.30000000000000004, 5e-324, 1.7976931348623157e308]",
                "[0.30000000000000004,5e-324,1.7976931348623157e+308]",
            ),
            ("escapes undone", r#"["\u0041\/\u00e9"]"#, "[\"A/\u{e9}\"]"),
            (
                "escapes kept",
                r#"["\"\\\b\f\n\r\t\u0001\u001f"]"#,
                r#"["\"\\\b\f\n\r\t\u0001\u001f"]"#,
            ),
            (
                "written as characters",
                "[\"\\u007f\\u2028\\u2029\u{1F600}\\ud83d\\ude00\"]",
                "[\"\u{7f}\u{2028}\u{2029}\u{1F600}\u{1F600}\"]",
            ),
            (
                "lone surrogates",
                r#"["\uD800", "a\udc00b"]"#,
                r#"["\ud800","a\udc00b"]"#,
            ),
            (
                "array-index keys first",
                r#"{"b":1,"10":2,"a":3,"2":4,"01":5,"-1":6,"4294967294":7,"4294967295":8}"#,
                r#"{"2":4,"10":2,"4294967294":7,"b":1,"a":3,"01":5,"-1":6,"4294967295":8}"#,
            ),
            ("repeated key", r#"{"a":1,"b":2,"a":3}"#, r#"{"a":3,"b":2}"#),
            ("byte order mark", "\u{feff}{\"a\": 1}", r#"{"a":1}"#),
            ("a bare scalar", " \"x\" ", r#""x""#),
        ];
        for (name, input, expected) in cases {
            assert_eq!(js(input).as_deref(), Some(expected), "{name}");
        }
    }

    #[test]
    fn refuses_what_json_parse_refuses() {
        let cases = [
            ("empty", ""),
            ("trailing comma", r#"{"a":1,}"#),
            ("single quotes", "{'a':1}"),
            ("raw control character", "[\"a\u{1}b\"]"),
            ("leading zero", "[01]"),
            ("bare point", "[1.]"),
            ("plus sign", "[+1]"),
            ("bad escape", r#"["\x41"]"#),
            ("short unicode escape", r#"["\u41"]"#),
            ("two values", "1 2"),
            ("unclosed", r#"{"a":[1"#),
            ("not UTF-8", "\u{fffd}"),
        ];
        for (name, input) in cases {
            let bytes: &[u8] = if name == "not UTF-8" {
                b"[\"\xff\"]"
            } else {
                input.as_bytes()
            };
            assert_eq!(stringify(bytes), None, "{name}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_recursed_into() {
        let deep = "[".repeat(100_000);
        assert_eq!(stringify(deep.as_bytes()), None);
        let fine = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(js(&fine).as_deref(), Some(fine.as_str()));
    }
}
