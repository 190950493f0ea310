//! One escaper per markup language memtrace writes: [`html`] for the HTML
//! report, [`xml`] for JUnit, SVG and every other XML file. Text from a log
//! (function names, file paths, command lines) is hostile input: it may hold
//! any character, so both escape the markup characters and replace what the
//! language cannot carry. JSON is written by serde, which escapes by itself.
//!
//! Uses nothing of the crate.

/// Escapes text for HTML content and attribute values; control characters
/// other than tab and line feed become spaces.
pub fn html(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            '\t' | '\n' => o.push(c),
            c if c.is_control() => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

/// Escapes text for XML content and attribute values; characters XML 1.0
/// cannot carry (controls other than tab and line breaks, U+FFFE, U+FFFF)
/// become `?`.
pub fn xml(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            '\t' | '\n' | '\r' => o.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => o.push('?'),
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    #[test]
    fn markup_and_controls() {
        assert_eq!(
            super::html("<a href='x'>&\"\u{7}\t"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot; \t"
        );
        assert_eq!(
            super::xml("<a b='x'>&\"\u{7}\r\u{ffff}"),
            "&lt;a b=&apos;x&apos;&gt;&amp;&quot;?\r?"
        );
    }
}
