//! Redis's glob (`stringmatchlen`): `*`, `?`, `[abc]`, `[^a]`, `[a-z]`, `\x`. Used by
//! SCAN / KEYS `MATCH` and by pattern subscriptions.

/// Whether `text` matches the glob `pattern`, byte for byte, as Redis decides it.
pub fn matches(pattern: &[u8], text: &[u8]) -> bool {
  let mut skip_longer = false;
  match_from(pattern, text, &mut skip_longer, 0)
}

fn match_from(mut p: &[u8], mut s: &[u8], skip_longer: &mut bool, nesting: u32) -> bool {
  // Redis bounds the recursion the same way (a pathological pattern answers "no match").
  if nesting > 1000 {
    return false;
  }
  while !p.is_empty() && !s.is_empty() {
    match p[0] {
      b'*' => {
        while p.len() > 1 && p[1] == b'*' {
          p = &p[1..];
        }
        if p.len() == 1 {
          return true;
        }
        while !s.is_empty() {
          if match_from(&p[1..], s, skip_longer, nesting + 1) {
            return true;
          }
          if *skip_longer {
            return false;
          }
          s = &s[1..];
        }
        *skip_longer = true;
        return false;
      }
      b'?' => {
        s = &s[1..];
      }
      b'[' => {
        p = &p[1..];
        let not = p.first() == Some(&b'^');
        if not {
          p = &p[1..];
        }
        let mut matched = false;
        loop {
          if p.is_empty() {
            break;
          }
          if p[0] == b'\\' && p.len() >= 2 {
            p = &p[1..];
            if p[0] == s[0] {
              matched = true;
            }
          } else if p[0] == b']' {
            break;
          } else if p.len() >= 3 && p[1] == b'-' {
            let (mut start, mut end) = (p[0], p[2]);
            if start > end {
              std::mem::swap(&mut start, &mut end);
            }
            if s[0] >= start && s[0] <= end {
              matched = true;
            }
            p = &p[2..];
          } else if p[0] == s[0] {
            matched = true;
          }
          p = &p[1..];
        }
        // `p` is at the closing `]` (or the pattern ended: an unterminated class still
        // counts, as in Redis)
        let matched = if not { !matched } else { matched };
        if !matched {
          return false;
        }
        s = &s[1..];
      }
      b'\\' if p.len() >= 2 => {
        p = &p[1..];
        if p[0] != s[0] {
          return false;
        }
        s = &s[1..];
      }
      c => {
        if c != s[0] {
          return false;
        }
        s = &s[1..];
      }
    }
    if p.is_empty() {
      break;
    }
    p = &p[1..];
    if s.is_empty() {
      while p.first() == Some(&b'*') {
        p = &p[1..];
      }
      break;
    }
  }
  p.is_empty() && s.is_empty()
}

#[cfg(test)]
mod tests {
  use super::matches;

  fn m(p: &str, s: &str) -> bool {
    matches(p.as_bytes(), s.as_bytes())
  }

  #[test]
  fn stars_and_question_marks() {
    assert!(
      !m("*", ""),
      "as in Redis: the loop never starts on an empty string"
    );
    assert!(m("*", "anything"));
    assert!(m("user:*", "user:1"));
    assert!(m("user:*", "user:"));
    assert!(!m("user:*", "use"));
    assert!(m("*:1", "user:1"));
    assert!(m("a*b*c", "aXXbYYc"));
    assert!(!m("a*b*c", "aXXbYY"));
    assert!(m("h?llo", "hello"));
    assert!(!m("h?llo", "hllo"));
    assert!(m("**x", "abx"));
    assert!(!m("", "a"));
    assert!(m("", ""));
  }

  #[test]
  fn classes_ranges_negation_and_escapes() {
    assert!(m("h[ae]llo", "hallo"));
    assert!(!m("h[ae]llo", "hillo"));
    assert!(m("h[^e]llo", "hallo"));
    assert!(!m("h[^e]llo", "hello"));
    assert!(m("h[a-b]llo", "hbllo"));
    assert!(m("h[b-a]llo", "hallo"));
    assert!(!m("h[a-b]llo", "hcllo"));
    assert!(m("a\\*b", "a*b"));
    assert!(!m("a\\*b", "axb"));
    assert!(m("a[\\]]b", "a]b"));
    assert!(m("key\\?", "key?"));
    assert!(!m("key\\?", "keyx"));
    assert!(m("{t}:\\{x\\}", "{t}:{x}"));
  }
}
