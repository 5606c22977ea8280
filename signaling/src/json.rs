//! The JSON the client reads and writes: flat objects of strings, small integers and
//! opaque values it passes on untouched.
//!
//! The server parses with serde_json. The browser client does not: serde's generic
//! machinery cost its WebAssembly ≈ 32 KiB of 241 gzipped (measured when this replaced
//! it), and these few message shapes need none of it. What is read is checked in full
//! (RFC 8259 grammar, nesting depth, escapes), so a hostile frame is refused here just
//! as serde_json would refuse it; `tests/fuzz.rs` holds the two to the same verdicts.

use std::borrow::Cow;
use std::fmt;

/// Nesting deeper than this is refused (serde_json's own limit), so that a hostile
/// frame cannot exhaust the stack.
const MAX_DEPTH: usize = 128;

/// Why a text is not what was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonError {
    /// Not JSON at all (or not one JSON object): `bad-json`.
    Syntax(&'static str),
    /// JSON, but a field is of the wrong kind or given twice: `bad-message`.
    Data(String),
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonError::Syntax(what) => f.write_str(what),
            JsonError::Data(what) => f.write_str(what),
        }
    }
}

/// One JSON object's fields: names decoded, values kept as the text they were written
/// as (checked to be JSON).
#[derive(Debug)]
pub struct Object<'a> {
    fields: Vec<(Cow<'a, str>, &'a str)>,
}

impl<'a> Object<'a> {
    /// Parses `text`, which must be exactly one JSON object (whitespace around it).
    pub fn parse(text: &'a str) -> Result<Object<'a>, JsonError> {
        let mut reader = Reader { text, at: 0 };
        reader.skip_whitespace();
        let object = reader.object(0)?;
        reader.skip_whitespace();
        if reader.at != text.len() {
            return Err(JsonError::Syntax("trailing characters"));
        }
        Ok(object)
    }

    /// The raw text of field `name`; `None` if absent or `null`. A name given twice is
    /// an error, as with serde's structs.
    pub fn raw(&self, name: &str) -> Result<Option<&'a str>, JsonError> {
        let mut found = self.fields.iter().filter(|(key, _)| key == name).map(|(_, value)| *value);
        match (found.next(), found.next()) {
            (Some(_), Some(_)) => Err(JsonError::Data(format!("duplicate field `{name}`"))),
            (Some("null") | None, None) => Ok(None),
            (value, _) => Ok(value),
        }
    }

    /// Field `name` as a string; `None` if absent or `null`.
    pub fn str(&self, name: &str) -> Result<Option<Cow<'a, str>>, JsonError> {
        match self.raw(name)? {
            None => Ok(None),
            Some(value) => string_value(value)?.map(Some).ok_or_else(|| wrong_kind(name, "a string")),
        }
    }

    /// Field `name` as a non-negative integer that fits in a `u32` (written without a
    /// fraction or exponent); `None` if absent or `null`.
    pub fn u32(&self, name: &str) -> Result<Option<u32>, JsonError> {
        match self.raw(name)? {
            None => Ok(None),
            // A checked JSON number: `parse` then refuses a sign, a fraction and an exponent.
            Some(value) => value.parse::<u32>().map(Some).map_err(|_| wrong_kind(name, "an integer of 32 bits")),
        }
    }

    /// Field `name` as an array of objects; `None` if absent or `null`.
    pub fn objects(&self, name: &str) -> Result<Option<Vec<Object<'a>>>, JsonError> {
        self.array(name, "an array of objects", |item| if item.starts_with('{') { Object::parse(item).map(Some) } else { Ok(None) })
    }

    /// Field `name` as an array of strings; `None` if absent or `null`.
    pub fn strings(&self, name: &str) -> Result<Option<Vec<String>>, JsonError> {
        self.array(name, "an array of strings", |item| Ok(string_value(item)?.map(Cow::into_owned)))
    }

    /// Field `name` as an array whose every item `read` takes (`None`: not of the kind
    /// `expected` names); `None` if absent or `null`.
    fn array<T>(&self, name: &str, expected: &str, read: impl Fn(&'a str) -> Result<Option<T>, JsonError>) -> Result<Option<Vec<T>>, JsonError> {
        let Some(value) = self.raw(name)? else { return Ok(None) };
        let items = array_items(value).ok_or_else(|| wrong_kind(name, "an array"))?;
        items.into_iter().map(|item| read(item)?.ok_or_else(|| wrong_kind(name, expected))).collect::<Result<_, _>>().map(Some)
    }

    /// Field `name` as an object; `None` if absent or `null`.
    pub fn object(&self, name: &str) -> Result<Option<Object<'a>>, JsonError> {
        match self.raw(name)? {
            None => Ok(None),
            Some(value) if value.starts_with('{') => Object::parse(value).map(Some),
            Some(_) => Err(wrong_kind(name, "an object")),
        }
    }
}

fn wrong_kind(name: &str, expected: &str) -> JsonError {
    JsonError::Data(format!("field `{name}` must be {expected}"))
}

/// A checked JSON value's text as a string, if it is one; a syntax error if it cannot
/// be decoded (a lone surrogate escape).
fn string_value(value: &str) -> Result<Option<Cow<'_, str>>, JsonError> {
    if !value.starts_with('"') {
        return Ok(None);
    }
    Reader { text: value, at: 0 }.string().map(Some)
}

/// A checked JSON value's items, if it is an array.
fn array_items(value: &str) -> Option<Vec<&str>> {
    if !value.starts_with('[') {
        return None;
    }
    let mut reader = Reader { text: value, at: 1 };
    let mut items = Vec::new();
    reader.skip_whitespace();
    if reader.eat(b']') {
        return Some(items);
    }
    loop {
        reader.skip_whitespace();
        let start = reader.at;
        reader.value(1).ok()?;
        items.push(&value[start..reader.at]);
        reader.skip_whitespace();
        if reader.eat(b']') {
            return Some(items);
        }
        if !reader.eat(b',') {
            return None;
        }
    }
}

/// Appends `text` as a JSON string, escaped as serde_json escapes it (only `"`, `\`
/// and control characters), so both ends write byte-identical frames.
pub fn write_str(out: &mut String, text: &str) {
    out.push('"');
    let mut plain = 0;
    for (i, c) in text.char_indices() {
        let escape = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            '\u{8}' => "\\b",
            '\u{c}' => "\\f",
            c if (c as u32) < 0x20 => "",
            _ => continue,
        };
        out.push_str(&text[plain..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            let byte = c as u8;
            out.push_str("\\u00");
            out.push(HEX[usize::from(byte >> 4)] as char);
            out.push(HEX[usize::from(byte & 15)] as char);
        } else {
            out.push_str(escape);
        }
        plain = i + c.len_utf8();
    }
    out.push_str(&text[plain..]);
    out.push('"');
}

/// Writes one JSON object, field by field, in the order given.
pub struct ObjectWriter {
    out: String,
}

impl ObjectWriter {
    /// An empty object, to add fields to.
    pub fn new() -> ObjectWriter {
        ObjectWriter { out: String::from("{") }
    }

    fn name(&mut self, name: &str) {
        if self.out.len() > 1 {
            self.out.push(',');
        }
        write_str(&mut self.out, name);
        self.out.push(':');
    }

    /// A string field.
    pub fn str(mut self, name: &str, value: &str) -> ObjectWriter {
        self.name(name);
        write_str(&mut self.out, value);
        self
    }

    /// A string field, left out when `None`.
    pub fn opt_str(self, name: &str, value: Option<&str>) -> ObjectWriter {
        match value {
            Some(value) => self.str(name, value),
            None => self,
        }
    }

    /// An integer field.
    pub fn u32(mut self, name: &str, value: u32) -> ObjectWriter {
        self.name(name);
        self.out.push_str(&value.to_string());
        self
    }

    /// A field whose value is already JSON text (the caller's own, or checked).
    pub fn raw(mut self, name: &str, json: &str) -> ObjectWriter {
        self.name(name);
        self.out.push_str(json);
        self
    }

    /// The object's JSON text.
    pub fn finish(mut self) -> String {
        self.out.push('}');
        self.out
    }
}

impl Default for ObjectWriter {
    fn default() -> Self {
        ObjectWriter::new()
    }
}

struct Reader<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let matched = self.peek() == Some(byte);
        if matched {
            self.at += 1;
        }
        matched
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8, what: &'static str) -> Result<(), JsonError> {
        if self.eat(byte) {
            Ok(())
        } else {
            Err(JsonError::Syntax(what))
        }
    }

    fn object(&mut self, depth: usize) -> Result<Object<'a>, JsonError> {
        self.expect(b'{', "expected a JSON object")?;
        let mut fields = Vec::new();
        self.skip_whitespace();
        if self.eat(b'}') {
            return Ok(Object { fields });
        }
        loop {
            self.skip_whitespace();
            if self.peek() != Some(b'"') {
                return Err(JsonError::Syntax("expected a field name"));
            }
            let name = self.string()?;
            self.skip_whitespace();
            self.expect(b':', "expected `:`")?;
            self.skip_whitespace();
            let start = self.at;
            self.value(depth + 1)?;
            fields.push((name, &self.text[start..self.at]));
            self.skip_whitespace();
            if self.eat(b'}') {
                return Ok(Object { fields });
            }
            self.expect(b',', "expected `,` or `}`")?;
        }
    }

    /// Checks one value and moves past it. Its strings (and the names in its objects)
    /// are only checked for well-formed escapes, not decoded: like serde_json, a value
    /// kept as text may hold a lone surrogate escape, which whoever decodes it judges.
    fn value(&mut self, depth: usize) -> Result<(), JsonError> {
        if depth > MAX_DEPTH {
            return Err(JsonError::Syntax("nested too deeply"));
        }
        let (open, close) = match self.peek() {
            Some(b'{') => (b'{', b'}'),
            Some(b'[') => (b'[', b']'),
            Some(b'"') => return self.skip_string(),
            Some(b'-' | b'0'..=b'9') => return self.number(),
            _ => {
                for literal in ["true", "false", "null"] {
                    if self.text[self.at..].starts_with(literal) {
                        self.at += literal.len();
                        return Ok(());
                    }
                }
                return Err(JsonError::Syntax("expected a value"));
            }
        };
        self.at += 1;
        self.skip_whitespace();
        if self.eat(close) {
            return Ok(());
        }
        loop {
            self.skip_whitespace();
            if open == b'{' {
                if self.peek() != Some(b'"') {
                    return Err(JsonError::Syntax("expected a field name"));
                }
                self.skip_string()?;
                self.skip_whitespace();
                self.expect(b':', "expected `:`")?;
                self.skip_whitespace();
            }
            self.value(depth + 1)?;
            self.skip_whitespace();
            if self.eat(close) {
                return Ok(());
            }
            self.expect(b',', if open == b'{' { "expected `,` or `}`" } else { "expected `,` or `]`" })?;
        }
    }

    /// Moves past a string (at its opening quote), checking only its escapes' syntax.
    fn skip_string(&mut self) -> Result<(), JsonError> {
        self.at += 1;
        let bytes = self.text.as_bytes();
        loop {
            match bytes.get(self.at) {
                None => return Err(JsonError::Syntax("unterminated string")),
                Some(b'"') => {
                    self.at += 1;
                    return Ok(());
                }
                Some(b'\\') => match bytes.get(self.at + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.at += 2,
                    Some(b'u') => {
                        hex4(bytes, self.at + 2)?;
                        self.at += 6;
                    }
                    _ => return Err(JsonError::Syntax("invalid escape in a string")),
                },
                Some(0..=0x1f) => return Err(JsonError::Syntax("control character in a string")),
                Some(_) => self.at += 1,
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
        self.at - start
    }

    fn number(&mut self) -> Result<(), JsonError> {
        const BAD: JsonError = JsonError::Syntax("invalid number");
        self.eat(b'-');
        match self.peek() {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(BAD),
        }
        if self.eat(b'.') && self.digits() == 0 {
            return Err(BAD);
        }
        if self.eat(b'e') || self.eat(b'E') {
            if !self.eat(b'+') {
                self.eat(b'-');
            }
            if self.digits() == 0 {
                return Err(BAD);
            }
        }
        // "01" or "1a": serde_json reads a number, then refuses what follows it.
        match self.peek() {
            Some(b'0'..=b'9') => Err(BAD),
            _ => Ok(()),
        }
    }

    /// Reads a string (at its opening quote), decoding escapes only if it has any.
    fn string(&mut self) -> Result<Cow<'a, str>, JsonError> {
        self.expect(b'"', "expected a string")?;
        let bytes = self.text.as_bytes();
        let start = self.at;
        let mut decoded: Option<String> = None;
        let mut plain = start;
        loop {
            let Some(&byte) = bytes.get(self.at) else { return Err(JsonError::Syntax("unterminated string")) };
            match byte {
                b'"' => {
                    let end = self.at;
                    self.at += 1;
                    return Ok(match decoded {
                        None => Cow::Borrowed(&self.text[start..end]),
                        Some(mut text) => {
                            text.push_str(&self.text[plain..end]);
                            Cow::Owned(text)
                        }
                    });
                }
                b'\\' => {
                    let text = decoded.get_or_insert_with(String::new);
                    text.push_str(&self.text[plain..self.at]);
                    self.at += 1;
                    let escaped = bytes.get(self.at).copied();
                    self.at += 1;
                    match escaped {
                        Some(b'"') => text.push('"'),
                        Some(b'\\') => text.push('\\'),
                        Some(b'/') => text.push('/'),
                        Some(b'b') => text.push('\u{8}'),
                        Some(b'f') => text.push('\u{c}'),
                        Some(b'n') => text.push('\n'),
                        Some(b'r') => text.push('\r'),
                        Some(b't') => text.push('\t'),
                        Some(b'u') => {
                            let unit = hex4(bytes, self.at)?;
                            self.at += 4;
                            let c = match unit {
                                0xD800..=0xDBFF => {
                                    // A high surrogate must be followed by an escaped low one.
                                    if bytes.get(self.at..self.at + 2) != Some(b"\\u") {
                                        return Err(JsonError::Syntax("lone surrogate in a string"));
                                    }
                                    let low = hex4(bytes, self.at + 2)?;
                                    if !(0xDC00..=0xDFFF).contains(&low) {
                                        return Err(JsonError::Syntax("lone surrogate in a string"));
                                    }
                                    self.at += 6;
                                    char::from_u32(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))
                                }
                                0xDC00..=0xDFFF => None,
                                unit => char::from_u32(unit),
                            };
                            text.push(c.ok_or(JsonError::Syntax("lone surrogate in a string"))?);
                        }
                        _ => return Err(JsonError::Syntax("invalid escape in a string")),
                    }
                    plain = self.at;
                }
                0..=0x1f => return Err(JsonError::Syntax("control character in a string")),
                _ => self.at += 1,
            }
        }
    }
}

fn hex4(bytes: &[u8], at: usize) -> Result<u32, JsonError> {
    let digits = bytes.get(at..at + 4).ok_or(JsonError::Syntax("invalid escape in a string"))?;
    digits.iter().try_fold(0u32, |n, &d| (d as char).to_digit(16).map(|d| n * 16 + d)).ok_or(JsonError::Syntax("invalid escape in a string"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_by_kind() -> Result<(), JsonError> {
        let text = r#" {"s":"a\"b\u00e9\ud83d\ude00","n":7,"raw":{"x":[1,2.5e-3,null,true]},"none":null,
            "list":[{"id":"p"},{"id":"q","name":"Q"}],"urls":["stun:x","turn:y"]} "#;
        let object = Object::parse(text)?;
        assert_eq!(object.str("s")?.as_deref(), Some("a\"bé😀"));
        assert_eq!(object.u32("n")?, Some(7));
        assert_eq!(object.raw("raw")?, Some(r#"{"x":[1,2.5e-3,null,true]}"#));
        assert_eq!(object.raw("none")?, None);
        assert_eq!(object.str("absent")?, None);
        let list = object.objects("list")?.unwrap_or_default();
        assert_eq!(list.len(), 2);
        assert_eq!(list[1].str("name")?.as_deref(), Some("Q"));
        assert_eq!(object.strings("urls")?, Some(vec!["stun:x".to_owned(), "turn:y".to_owned()]));
        Ok(())
    }

    #[test]
    fn fields_of_the_wrong_kind_or_given_twice_are_data_errors() -> Result<(), JsonError> {
        let object = Object::parse(r#"{"s":1,"n":"7","f":1.0,"neg":-1,"big":4294967296,"d":"x","d":"y"}"#)?;
        for result in [
            object.str("s").map(drop),
            object.u32("n").map(drop),
            object.u32("f").map(drop),
            object.u32("neg").map(drop),
            object.u32("big").map(drop),
            object.str("d").map(drop),
        ] {
            assert!(matches!(result, Err(JsonError::Data(_))), "{result:?}");
        }
        assert!(matches!(object.objects("s"), Err(JsonError::Data(_))));
        assert!(matches!(object.strings("d"), Err(JsonError::Data(_))));
        Ok(())
    }

    #[test]
    fn what_is_not_one_json_object_is_a_syntax_error() {
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(200), "]".repeat(200));
        for bad in [
            "",
            "[]",
            "\"s\"",
            "{",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "{\"a\":1} x",
            "{a:1}",
            "{\"a\":01}",
            "{\"a\":1.}",
            "{\"a\":-}",
            "{\"a\":1e}",
            "{\"a\":tru}",
            "{\"a\":\"\u{1}\"}",
            "{\"a\":\"\\x\"}",
            "{\"\\ud800\":1}",
            "{\"a\":\"\\u12\"}",
            "{\"a\":\"open}",
            "{\"a\":[1 2]}",
            &deep,
        ] {
            assert!(matches!(Object::parse(bad), Err(JsonError::Syntax(_))), "{bad:?}");
        }
    }

    #[test]
    fn a_lone_surrogate_is_refused_where_a_string_is_decoded_and_kept_where_a_value_is_passed_on() -> Result<(), JsonError> {
        let object = Object::parse(r#"{"a":"\ud800","b":"\udc00x","c":"\ud800\u0041","raw":["\ud800"],"list":["\udfff"]}"#)?;
        for name in ["a", "b", "c"] {
            assert!(matches!(object.str(name), Err(JsonError::Syntax(_))), "{name}");
        }
        assert!(matches!(object.strings("list"), Err(JsonError::Syntax(_))));
        assert_eq!(object.raw("raw")?, Some(r#"["\ud800"]"#));
        Ok(())
    }

    #[test]
    fn strings_are_written_as_serde_json_writes_them() -> Result<(), JsonError> {
        let mut out = String::new();
        write_str(&mut out, "plain \"q\" \\ / \n\r\t\u{8}\u{c}\u{1}\u{1f}\u{7f} é 😀");
        assert_eq!(out, r#""plain \"q\" \\ / \n\r\t\b\f\u0001\u001f"#.to_owned() + "\u{7f} é 😀\"");
        let written = ObjectWriter::new().str("type", "x").opt_str("no", None).u32("gen", 3).raw("data", "[1]").finish();
        assert_eq!(written, r#"{"type":"x","gen":3,"data":[1]}"#);
        let object = format!(r#"{{"s":{out}}}"#);
        let read = Object::parse(&object)?;
        assert_eq!(read.str("s")?.as_deref(), Some("plain \"q\" \\ / \n\r\t\u{8}\u{c}\u{1}\u{1f}\u{7f} é 😀"));
        Ok(())
    }
}
