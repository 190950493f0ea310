//! Wildcard matching for every format: [`glob`] (`*` and `?`) and
//! LeakSanitizer's variant (`?` literal). Uses nothing of the crate.

/// Glob match: `*` any run, `?` one char, anchored; linear-time-ish (no
/// exponential backtracking: the classic two-pointer star algorithm).
pub fn glob(pattern: &str, s: &str) -> bool {
    wildcard(pattern, s, true)
}

/// `*` any run; `?` one char when `question` (else an ordinary character).
pub(super) fn wildcard(pattern: &str, s: &str, question: bool) -> bool {
    // Bytes are exact unless `?` must match one (multi-byte) character:
    // a literal UTF-8 sequence can only match at a character boundary.
    if question && pattern.contains('?') && !s.is_ascii() {
        let p: Vec<char> = pattern.chars().collect();
        let s: Vec<char> = s.chars().collect();
        two_pointer(&p, &s, '*', Some('?'))
    } else {
        two_pointer(
            pattern.as_bytes(),
            s.as_bytes(),
            b'*',
            question.then_some(b'?'),
        )
    }
}

/// The classic wildcard matcher: on a mismatch, back up to just after the
/// last `*` and let it swallow one more character. O(|p| x |s|) at worst.
fn two_pointer<T: Copy + PartialEq>(p: &[T], s: &[T], star: T, any: Option<T>) -> bool {
    let (mut i, mut j) = (0, 0);
    // (pattern index after the last star, text index it resumes from)
    let mut back: Option<(usize, usize)> = None;
    while j < s.len() {
        if i < p.len() && p[i] == star {
            i += 1;
            back = Some((i, j));
        } else if i < p.len() && (p[i] == s[j] || Some(p[i]) == any) {
            i += 1;
            j += 1;
        } else if let Some((bi, bj)) = back {
            i = bi;
            j = bj + 1;
            back = Some((bi, j));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == star)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_basics() {
        assert!(glob("abc", "abc"));
        assert!(!glob("abc", "abcd"));
        assert!(!glob("abc", "xabc"));
        assert!(glob("*", ""));
        assert!(glob("*", "anything/at:all"));
        assert!(glob("a*", "a"));
        assert!(glob("a*", "abc/def"));
        assert!(glob("*c", "abc"));
        assert!(!glob("*c", "abcd"));
        assert!(glob("*b*", "abc"));
        assert!(glob("a*b*c", "a__b__b__c"));
        assert!(!glob("a*b*c", "a__c__b"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "ac"));
        assert!(!glob("a?c", "abbc"));
        assert!(glob("?", "é"));
        assert!(glob("a?c", "aéc"));
        assert!(glob("*é*", "caféine"));
        assert!(glob("ns::*::make", "ns::Widget::make"));
        assert!(glob("*/lib?.so", "/usr/lib/libm.so"));
        assert!(!glob("", "a"));
        assert!(glob("", ""));
        assert!(glob("**", "x"));
    }

    #[test]
    fn glob_no_blowup() {
        let s = "a".repeat(100_000);
        let t = std::time::Instant::now();
        assert!(!glob("a*a*a*a*a*b", &s));
        assert!(glob("a*a*a*a*a*", &s));
        assert!(!glob("*a*a*a*a*a*b*", &s));
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn lsan_question_mark_is_literal() {
        assert!(!wildcard("a?c", "abc", false));
        assert!(wildcard("a?c", "a?c", false));
        assert!(wildcard("*b*", "abc", false));
    }
}
