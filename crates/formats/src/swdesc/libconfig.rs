//! libconfig text syntax: parser (the subset libconfig 1.7 accepts, minus `@include`, which
//! SWUpdate forbids) and writer.

use super::value::{is_valid_name, Group, Value};
use super::ParseError;

/// Deepest nesting accepted; real sw-descriptions use fewer than 10 levels.
pub const MAX_DEPTH: usize = 64;

struct Parser<'a> {
    src: &'a [u8],
    pos: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn line_col(&self, pos: usize) -> (usize, usize) {
        let upto = &self.src[..pos.min(self.src.len())];
        let line = upto.iter().filter(|&&b| b == b'\n').count() + 1;
        let col = upto.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
        (line, col)
    }

    fn err_at(&self, pos: usize, message: impl Into<String>) -> ParseError {
        let (line, column) = self.line_col(pos);
        ParseError::Syntax {
            line,
            column,
            message: message.into(),
        }
    }

    fn err(&self, message: impl Into<String>) -> ParseError {
        self.err_at(self.pos, message)
    }

    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    fn skip_ws(&mut self) -> Result<(), ParseError> {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\r' | b'\n' | 0x0b | 0x0c) => self.pos += 1,
                Some(b'#') => self.skip_line(),
                Some(b'/') if self.src.get(self.pos + 1) == Some(&b'/') => self.skip_line(),
                Some(b'/') if self.src.get(self.pos + 1) == Some(&b'*') => {
                    let start = self.pos;
                    self.pos += 2;
                    loop {
                        match self.peek() {
                            None => return Err(self.err_at(start, "unterminated /* comment")),
                            Some(b'*') if self.src.get(self.pos + 1) == Some(&b'/') => {
                                self.pos += 2;
                                break;
                            }
                            Some(_) => self.pos += 1,
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn skip_line(&mut self) {
        while let Some(b) = self.peek() {
            self.pos += 1;
            if b == b'\n' {
                break;
            }
        }
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err(format!("nesting deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    /// Settings until `end` (`None` = end of input).
    fn settings(&mut self, end: Option<u8>) -> Result<Group, ParseError> {
        let mut group = Group::new();
        loop {
            self.skip_ws()?;
            match (self.peek(), end) {
                (None, None) => return Ok(group),
                (None, Some(e)) => return Err(self.err(format!("missing '{}'", e as char))),
                (Some(b), Some(e)) if b == e => {
                    self.pos += 1;
                    return Ok(group);
                }
                (Some(b'@'), _) => {
                    return Err(self.err("@include is not allowed in sw-description"))
                }
                _ => {}
            }
            let name_pos = self.pos;
            let name = self.name()?;
            self.skip_ws()?;
            match self.peek() {
                Some(b'=' | b':') => self.pos += 1,
                _ => {
                    return Err(self.err(format!("expected '=' or ':' after setting name {name:?}")))
                }
            }
            self.skip_ws()?;
            let value = self.value()?;
            group
                .push_unique(name, value)
                .map_err(|dup| self.err_at(name_pos, format!("duplicate setting {dup:?}")))?;
            self.skip_ws()?;
            if let Some(b';' | b',') = self.peek() {
                self.pos += 1;
            }
        }
    }

    fn name(&mut self) -> Result<String, ParseError> {
        let start = self.pos;
        while let Some(b) = self.peek() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'*') {
                self.pos += 1;
            } else {
                break;
            }
        }
        let name = std::str::from_utf8(&self.src[start..self.pos]).unwrap_or_default();
        if !is_valid_name(name) {
            return Err(self.err_at(start, "expected a setting name"));
        }
        Ok(name.to_string())
    }

    fn value(&mut self) -> Result<Value, ParseError> {
        match self.peek() {
            Some(b'{') => {
                self.pos += 1;
                self.enter()?;
                let g = self.settings(Some(b'}'))?;
                self.depth -= 1;
                Ok(Value::Group(g))
            }
            Some(b'(') => {
                self.pos += 1;
                self.enter()?;
                let items = self.elements(b')', false)?;
                self.depth -= 1;
                Ok(Value::List(items))
            }
            Some(b'[') => {
                self.pos += 1;
                self.enter()?;
                let items = self.elements(b']', true)?;
                self.depth -= 1;
                Ok(Value::Array(items))
            }
            _ => self.scalar(),
        }
    }

    fn elements(&mut self, end: u8, scalars_only: bool) -> Result<Vec<Value>, ParseError> {
        let mut items: Vec<Value> = Vec::new();
        self.skip_ws()?;
        if self.peek() == Some(end) {
            self.pos += 1;
            return Ok(items);
        }
        loop {
            self.skip_ws()?;
            let item_pos = self.pos;
            let item = if scalars_only {
                self.scalar()?
            } else {
                self.value()?
            };
            if scalars_only {
                if let Some(first) = items.first() {
                    if !first.same_scalar_kind(&item) {
                        return Err(self.err_at(item_pos, "mismatched element type in array"));
                    }
                }
            }
            items.push(item);
            self.skip_ws()?;
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_ws()?;
                    // libconfig 1.7 accepts a trailing comma.
                    if self.peek() == Some(end) {
                        self.pos += 1;
                        return Ok(items);
                    }
                }
                Some(b) if b == end => {
                    self.pos += 1;
                    return Ok(items);
                }
                None => return Err(self.err(format!("missing '{}'", end as char))),
                Some(_) => return Err(self.err(format!("expected ',' or '{}'", end as char))),
            }
        }
    }

    fn scalar(&mut self) -> Result<Value, ParseError> {
        match self.peek() {
            Some(b'"') => {
                let mut s = self.string()?;
                // Adjacent string literals concatenate.
                loop {
                    let save = self.pos;
                    self.skip_ws()?;
                    if self.peek() == Some(b'"') {
                        s.push_str(&self.string()?);
                    } else {
                        self.pos = save;
                        return Ok(Value::Str(s));
                    }
                }
            }
            Some(b) if b.is_ascii_alphabetic() => {
                let start = self.pos;
                while self.peek().is_some_and(|b| b.is_ascii_alphabetic()) {
                    self.pos += 1;
                }
                let word = std::str::from_utf8(&self.src[start..self.pos]).unwrap_or_default();
                if word.eq_ignore_ascii_case("true") {
                    Ok(Value::Bool(true))
                } else if word.eq_ignore_ascii_case("false") {
                    Ok(Value::Bool(false))
                } else {
                    Err(self.err_at(
                        start,
                        format!("unexpected word {word:?} (strings need double quotes)"),
                    ))
                }
            }
            Some(b'-' | b'+' | b'.' | b'0'..=b'9') => self.number(),
            Some(b) => Err(self.err(format!("unexpected character {:?}", b as char))),
            None => Err(self.err("unexpected end of input, expected a value")),
        }
    }

    fn string(&mut self) -> Result<String, ParseError> {
        let start = self.pos;
        self.pos += 1; // opening quote
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(b) = self.peek() else {
                return Err(self.err_at(start, "unterminated string"));
            };
            self.pos += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    let Some(e) = self.peek() else {
                        return Err(self.err_at(start, "unterminated string"));
                    };
                    self.pos += 1;
                    match e {
                        b'\\' => out.push(b'\\'),
                        b'"' => out.push(b'"'),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'f' => out.push(0x0c),
                        b'x' => {
                            let hex = self
                                .src
                                .get(self.pos..self.pos + 2)
                                .and_then(|h| std::str::from_utf8(h).ok());
                            let byte = hex.and_then(|h| u8::from_str_radix(h, 16).ok());
                            match byte {
                                Some(v) => {
                                    out.push(v);
                                    self.pos += 2;
                                }
                                None => return Err(self.err("\\x escape needs two hex digits")),
                            }
                        }
                        other => {
                            return Err(self.err(format!("unknown escape \\{}", other as char)))
                        }
                    }
                }
                _ => out.push(b),
            }
        }
        if out.contains(&0) {
            return Err(self.err_at(start, "string contains a NUL byte"));
        }
        String::from_utf8(out).map_err(|_| self.err_at(start, "string is not valid UTF-8"))
    }

    fn number(&mut self) -> Result<Value, ParseError> {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'+' | b'.'))
        {
            // Stop at a sign that does not follow an exponent marker.
            if matches!(self.peek(), Some(b'-' | b'+')) && self.pos > start {
                let prev = self.src[self.pos - 1];
                let hex = self.src[start..self.pos]
                    .windows(2)
                    .any(|w| w.eq_ignore_ascii_case(b"0x"));
                if !matches!(prev, b'e' | b'E') || hex {
                    break;
                }
            }
            self.pos += 1;
        }
        let text = std::str::from_utf8(&self.src[start..self.pos]).unwrap_or_default();
        parse_number(text).ok_or_else(|| self.err_at(start, format!("invalid number {text:?}")))
    }
}

fn parse_number(text: &str) -> Option<Value> {
    let (negative, body) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let body_int = body
        .strip_suffix("LL")
        .or_else(|| body.strip_suffix('L'))
        .unwrap_or(body);
    if let Some(hex) = body_int
        .strip_prefix("0x")
        .or_else(|| body_int.strip_prefix("0X"))
    {
        if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let v = u64::from_str_radix(hex, 16).ok()? as i64;
        return Some(Value::Int(if negative { v.wrapping_neg() } else { v }));
    }
    if !body_int.is_empty() && body_int.bytes().all(|b| b.is_ascii_digit()) {
        let magnitude: i128 = body_int.parse().ok()?;
        let v = if negative { -magnitude } else { magnitude };
        return i64::try_from(v).ok().map(Value::Int);
    }
    // Float: digits with a '.' and/or an exponent; nothing else (no inf/nan).
    let valid = body
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
        && body.bytes().any(|b| b.is_ascii_digit())
        && (body.contains('.') || body.contains(['e', 'E']));
    if !valid {
        return None;
    }
    let v: f64 = body.parse().ok()?;
    if !v.is_finite() {
        return None;
    }
    Some(Value::Float(if negative { -v } else { v }))
}

/// Parses libconfig text into its top-level group.
pub fn parse(text: &str) -> Result<Group, ParseError> {
    let mut p = Parser {
        src: text.as_bytes(),
        pos: 0,
        depth: 0,
    };
    p.settings(None)
}

/// Writes a top-level group as libconfig text.
pub fn write(root: &Group) -> String {
    let mut out = String::new();
    for (name, value) in root.iter() {
        write_setting(&mut out, name, value, 0);
    }
    out
}

fn indent(out: &mut String, level: usize) {
    for _ in 0..level {
        out.push_str("  ");
    }
}

fn write_setting(out: &mut String, name: &str, value: &Value, level: usize) {
    indent(out, level);
    out.push_str(name);
    out.push_str(" = ");
    write_value(out, value, level);
    out.push_str(";\n");
}

fn write_value(out: &mut String, value: &Value, level: usize) {
    match value {
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => {
            out.push_str(&i.to_string());
            if i32::try_from(*i).is_err() {
                out.push('L');
            }
        }
        Value::Float(f) => {
            let s = format!("{f:?}");
            out.push_str(&s);
        }
        Value::Str(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                out.push_str(if i == 0 { " " } else { ", " });
                write_value(out, item, level);
            }
            out.push_str(if items.is_empty() { "]" } else { " ]" });
        }
        Value::List(items) => {
            if items.is_empty() {
                out.push_str("( )");
                return;
            }
            out.push_str("(\n");
            for (i, item) in items.iter().enumerate() {
                indent(out, level + 1);
                write_value(out, item, level + 1);
                out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
            }
            indent(out, level);
            out.push(')');
        }
        Value::Group(g) => {
            if g.is_empty() {
                out.push_str("{ }");
                return;
            }
            out.push_str("{\n");
            for (name, v) in g.iter() {
                write_setting(out, name, v, level + 1);
            }
            indent(out, level);
            out.push('}');
        }
    }
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0c' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_syntax() {
        let text = r#"
            # comment
            // comment
            /* block
               comment */
            software =
            {
                version = "1.0" ".2";
                count : 0x10; big = 5000000000L; neg = -3; f = 1.5e3; g = .5;
                ok = TRUE, off = false
                hw = [ "a", "b", ];
                images: ( { filename = "x"; esc = "q\"\\\n\t\x41"; }, ( 1, "two" ) );
                empty = { }; nothing = ( ); none = [ ];
            };
        "#;
        let root = parse(text).unwrap();
        let sw = root.get("software").unwrap().as_group().unwrap();
        assert_eq!(sw.get("version"), Some(&Value::Str("1.0.2".into())));
        assert_eq!(sw.get("count"), Some(&Value::Int(16)));
        assert_eq!(sw.get("big"), Some(&Value::Int(5_000_000_000)));
        assert_eq!(sw.get("neg"), Some(&Value::Int(-3)));
        assert_eq!(sw.get("f"), Some(&Value::Float(1500.0)));
        assert_eq!(sw.get("g"), Some(&Value::Float(0.5)));
        assert_eq!(sw.get("ok"), Some(&Value::Bool(true)));
        assert_eq!(sw.get("off"), Some(&Value::Bool(false)));
        let images = sw.get("images").unwrap().as_elements().unwrap();
        let img = images[0].as_group().unwrap();
        assert_eq!(img.get("esc"), Some(&Value::Str("q\"\\\n\tA".into())));
        // Round trip through the writer.
        let again = parse(&write(&root)).unwrap();
        assert_eq!(again, root);
    }

    #[test]
    fn errors_name_line_and_problem() {
        let cases = [
            ("a = 1;\nb = ;", "line 2"),
            ("a = \"x", "unterminated string"),
            ("a = [1, \"x\"];", "mismatched"),
            ("a = 1; a = 2;", "duplicate setting \"a\""),
            ("@include \"x\"", "@include"),
            ("a = yes;", "strings need double quotes"),
            ("a = { b = 1; ", "missing '}'"),
            ("a = 99999999999999999999;", "invalid number"),
        ];
        for (text, needle) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
        let deep = "a = ".to_string() + &"(".repeat(200) + &")".repeat(200) + ";";
        assert!(parse(&deep).unwrap_err().to_string().contains("nesting"));
    }
}
