//! RESP (the Redis protocol) read from a byte buffer that may hold a partial reply: the
//! common RESP2 types are built here directly; the rarer RESP3 types are framed here and
//! built by redis-rs's own parser, so every reply becomes the `redis::Value` redis-rs
//! would give.

use redis::Value;

use crate::error::{RnError, RnResult};

/// Deepest nesting accepted (a reply nested deeper is refused, not a stack overflow).
const MAX_DEPTH: usize = 256;

/// The first complete reply in `buf` and how many bytes it took, or `None` when `buf`
/// holds only part of one.
pub fn parse(buf: &[u8]) -> RnResult<Option<(Value, usize)>> {
  value(buf, 0, 0)
}

fn bad(what: &str) -> RnError {
  RnError::connection(format!(
    "the server sent bytes that are not the Redis protocol ({what})"
  ))
}

fn memchr_lf(b: &[u8]) -> Option<usize> {
  b.iter().position(|&c| c == b'\n')
}

fn int(text: &[u8]) -> RnResult<i64> {
  std::str::from_utf8(text)
    .ok()
    .and_then(|s| s.parse::<i64>().ok())
    .ok_or_else(|| bad("a number was expected"))
}

/// A line-terminated header that must be complete: `None` when incomplete, an error
/// when a LF comes without its CR.
fn header(buf: &[u8], at: usize) -> RnResult<Option<(&[u8], usize)>> {
  let Some(rest) = buf.get(at..) else {
    return Ok(None);
  };
  match memchr_lf(rest) {
    None => Ok(None),
    Some(0) => Err(bad("an empty line")),
    Some(lf) if rest[lf - 1] != b'\r' => Err(bad("a line without CR")),
    Some(lf) => Ok(Some((&rest[..lf - 1], at + lf + 1))),
  }
}

fn value(buf: &[u8], at: usize, depth: usize) -> RnResult<Option<(Value, usize)>> {
  if depth > MAX_DEPTH {
    return Err(bad("nested too deeply"));
  }
  let Some(&kind) = buf.get(at) else {
    return Ok(None);
  };
  match kind {
    b'+' => {
      let Some((text, next)) = header(buf, at + 1)? else {
        return Ok(None);
      };
      let v = if text == b"OK" {
        Value::Okay
      } else {
        Value::SimpleString(String::from_utf8_lossy(text).into_owned())
      };
      Ok(Some((v, next)))
    }
    b':' => {
      let Some((text, next)) = header(buf, at + 1)? else {
        return Ok(None);
      };
      Ok(Some((Value::Int(int(text)?), next)))
    }
    b'$' => {
      let Some((text, next)) = header(buf, at + 1)? else {
        return Ok(None);
      };
      let len = int(text)?;
      if len < 0 {
        return Ok(Some((Value::Nil, next)));
      }
      let end = next + len as usize;
      if buf.len() < end + 2 {
        return Ok(None);
      }
      if &buf[end..end + 2] != b"\r\n" {
        return Err(bad("a bulk string without its CRLF"));
      }
      Ok(Some((Value::BulkString(buf[next..end].to_vec()), end + 2)))
    }
    b'*' => {
      let Some((text, mut next)) = header(buf, at + 1)? else {
        return Ok(None);
      };
      let len = int(text)?;
      if len < 0 {
        return Ok(Some((Value::Nil, next)));
      }
      let mut items = Vec::with_capacity((len as usize).min(1024));
      for _ in 0..len {
        match value(buf, next, depth + 1)? {
          None => return Ok(None),
          Some((v, n)) => {
            items.push(v);
            next = n;
          }
        }
      }
      Ok(Some((Value::Array(items), next)))
    }
    b'_' => {
      let Some((_, next)) = header(buf, at + 1)? else {
        return Ok(None);
      };
      Ok(Some((Value::Nil, next)))
    }
    // errors and the RESP3 types: framed here, built by redis-rs
    b'-' | b'!' | b',' | b'#' | b'(' | b'=' | b'%' | b'~' | b'>' | b'|' => {
      let Some(end) = frame_end(buf, at, depth)? else {
        return Ok(None);
      };
      let v = redis::parse_redis_value(&buf[at..end])
        .map_err(|e| bad(&format!("unreadable reply: {e}")))?;
      Ok(Some((v, end)))
    }
    other => Err(bad(&format!("unknown reply type {:?}", other as char))),
  }
}

/// Where the frame starting at `at` ends, without building it.
fn frame_end(buf: &[u8], at: usize, depth: usize) -> RnResult<Option<usize>> {
  if depth > MAX_DEPTH {
    return Err(bad("nested too deeply"));
  }
  let Some(&kind) = buf.get(at) else {
    return Ok(None);
  };
  let Some((text, next)) = header(buf, at + 1)? else {
    return Ok(None);
  };
  match kind {
    b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => Ok(Some(next)),
    b'$' | b'!' | b'=' => {
      let len = int(text)?;
      if len < 0 {
        return Ok(Some(next));
      }
      let end = next + len as usize + 2;
      Ok((buf.len() >= end).then_some(end))
    }
    b'*' | b'~' | b'>' | b'%' | b'|' => {
      let len = int(text)?;
      if len < 0 {
        return Ok(Some(next));
      }
      let items = if matches!(kind, b'%' | b'|') {
        len * 2
      } else {
        len
      };
      let mut at = next;
      for _ in 0..items {
        match frame_end(buf, at, depth + 1)? {
          None => return Ok(None),
          Some(n) => at = n,
        }
      }
      // an attribute is followed by the value it describes
      if kind == b'|' {
        return frame_end(buf, at, depth + 1);
      }
      Ok(Some(at))
    }
    other => Err(bad(&format!("unknown reply type {:?}", other as char))),
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn whole(bytes: &[u8]) -> Value {
    let (v, used) = parse(bytes).expect("valid").expect("complete");
    assert_eq!(used, bytes.len(), "consumed everything of {bytes:?}");
    v
  }

  #[test]
  fn every_type_reads_as_redis_rs_reads_it() {
    let samples: &[&[u8]] = &[
      b"+OK\r\n",
      b"+PONG\r\n",
      b":-42\r\n",
      b"$5\r\nhello\r\n",
      b"$0\r\n\r\n",
      b"$-1\r\n",
      b"*-1\r\n",
      b"*0\r\n",
      b"*3\r\n:1\r\n$1\r\na\r\n*1\r\n+x\r\n",
      b"-ERR unknown command\r\n",
      b"-WRONGTYPE Operation against a key\r\n",
      b"_\r\n",
      b",3.5\r\n",
      b"#t\r\n",
      b"(12345678901234567890\r\n",
      b"=7\r\ntxt:abc\r\n",
      b"!11\r\nSYNTAX oops\r\n",
      b"%2\r\n+a\r\n:1\r\n+b\r\n*1\r\n:2\r\n",
      b"~2\r\n:1\r\n:2\r\n",
      b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n",
      b"|1\r\n+ttl\r\n:3\r\n$1\r\nv\r\n",
      b"*2\r\n%1\r\n+k\r\n,1.5\r\n$-1\r\n",
    ];
    for s in samples {
      let expected = redis::parse_redis_value(s).expect("redis-rs reads it");
      assert_eq!(whole(s), expected, "{}", String::from_utf8_lossy(s));
    }
  }

  #[test]
  fn a_partial_reply_is_incomplete_at_every_cut() {
    let full = b"*3\r\n$5\r\nhello\r\n:7\r\n%1\r\n+a\r\n~1\r\n:1\r\n";
    for cut in 0..full.len() {
      assert_eq!(parse(&full[..cut]).expect("no error"), None, "cut at {cut}");
    }
    assert!(parse(full).expect("valid").is_some());
  }

  #[test]
  fn replies_follow_each_other() {
    let buf = b"+OK\r\n:1\r\n$1\r\nx\r\n";
    let (a, n) = parse(buf).unwrap().unwrap();
    assert_eq!(a, Value::Okay);
    let (b, m) = parse(&buf[n..]).unwrap().unwrap();
    assert_eq!(b, Value::Int(1));
    let (c, _) = parse(&buf[n + m..]).unwrap().unwrap();
    assert_eq!(c, Value::BulkString(b"x".to_vec()));
  }

  #[test]
  fn bytes_that_are_not_resp_are_an_error() {
    for s in [
      &b"HTTP/1.1 400 Bad Request\r\n"[..],
      b":abc\r\n",
      b"$3\r\nabcd\r\n",
      b"+x\n",
    ] {
      assert!(parse(s).is_err(), "{}", String::from_utf8_lossy(s));
    }
  }

  #[test]
  fn absurd_nesting_is_refused_without_overflowing_the_stack() {
    let mut deep = Vec::new();
    for _ in 0..10_000 {
      deep.extend_from_slice(b"*1\r\n");
    }
    deep.extend_from_slice(b":1\r\n");
    assert!(parse(&deep).is_err());
  }
}
