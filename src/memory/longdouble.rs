//! The x87 `long double` (64-bit mantissa) that Redis's INCRBYFLOAT / HINCRBYFLOAT compute
//! in: `strtold`, one addition, `%.17Lf`, each rounded to nearest-even as glibc does, on
//! exact big integers. Subnormal long doubles (below 2^-16382) are not modelled.

/// An unsigned big integer, 32-bit limbs, least significant first.
#[derive(Clone, Debug, Default)]
struct Big(Vec<u32>);

impl Big {
  fn from_u64(v: u64) -> Big {
    let mut b = Big(vec![v as u32, (v >> 32) as u32]);
    b.trim();
    b
  }
  fn trim(&mut self) {
    while self.0.last() == Some(&0) {
      self.0.pop();
    }
  }
  fn is_zero(&self) -> bool {
    self.0.is_empty()
  }
  fn mul_add_small(&mut self, m: u32, add: u32) {
    let mut carry = add as u64;
    for limb in self.0.iter_mut() {
      let v = *limb as u64 * m as u64 + carry;
      *limb = v as u32;
      carry = v >> 32;
    }
    if carry > 0 {
      self.0.push(carry as u32);
    }
    self.trim();
  }
  /// Divides in place; the remainder.
  fn div_small(&mut self, d: u32) -> u32 {
    let mut rem = 0u64;
    for limb in self.0.iter_mut().rev() {
      let v = (rem << 32) | *limb as u64;
      *limb = (v / d as u64) as u32;
      rem = v % d as u64;
    }
    self.trim();
    rem as u32
  }
  fn bits(&self) -> u64 {
    match self.0.last() {
      None => 0,
      Some(top) => (self.0.len() as u64 - 1) * 32 + (32 - top.leading_zeros() as u64),
    }
  }
  fn bit(&self, i: u64) -> bool {
    let limb = (i / 32) as usize;
    limb < self.0.len() && (self.0[limb] >> (i % 32)) & 1 == 1
  }
  /// Whether any of the bits below `i` is set.
  fn any_below(&self, i: u64) -> bool {
    let full = (i / 32) as usize;
    if self.0.iter().take(full).any(|&l| l != 0) {
      return true;
    }
    let rest = i % 32;
    rest > 0 && full < self.0.len() && self.0[full] & ((1u32 << rest) - 1) != 0
  }
  fn shl(&self, n: u64) -> Big {
    let (limbs, bits) = ((n / 32) as usize, (n % 32) as u32);
    let mut out = vec![0u32; limbs];
    let mut carry = 0u32;
    for &l in &self.0 {
      if bits == 0 {
        out.push(l);
      } else {
        out.push((l << bits) | carry);
        carry = l >> (32 - bits);
      }
    }
    if carry > 0 {
      out.push(carry);
    }
    let mut b = Big(out);
    b.trim();
    b
  }
  fn shr(&self, n: u64) -> Big {
    let (limbs, bits) = ((n / 32) as usize, (n % 32) as u32);
    if limbs >= self.0.len() {
      return Big::default();
    }
    let src = &self.0[limbs..];
    let mut out = Vec::with_capacity(src.len());
    for i in 0..src.len() {
      let lo = src[i] >> bits;
      let hi = if bits > 0 && i + 1 < src.len() {
        src[i + 1] << (32 - bits)
      } else {
        0
      };
      out.push(lo | hi);
    }
    let mut b = Big(out);
    b.trim();
    b
  }
  fn to_u64(&self) -> u64 {
    self
      .0
      .iter()
      .rev()
      .fold(0u64, |acc, &l| (acc << 32) | l as u64)
  }
  fn cmp(&self, other: &Big) -> std::cmp::Ordering {
    self
      .0
      .len()
      .cmp(&other.0.len())
      .then_with(|| self.0.iter().rev().cmp(other.0.iter().rev()))
  }
  fn add(&self, other: &Big) -> Big {
    let mut out = Vec::with_capacity(self.0.len().max(other.0.len()) + 1);
    let mut carry = 0u64;
    for i in 0..self.0.len().max(other.0.len()) {
      let v = *self.0.get(i).unwrap_or(&0) as u64 + *other.0.get(i).unwrap_or(&0) as u64 + carry;
      out.push(v as u32);
      carry = v >> 32;
    }
    out.push(carry as u32);
    let mut b = Big(out);
    b.trim();
    b
  }
  /// `self - other`, `self >= other`.
  fn sub(&self, other: &Big) -> Big {
    let mut out = Vec::with_capacity(self.0.len());
    let mut borrow = 0i64;
    for i in 0..self.0.len() {
      let mut v = self.0[i] as i64 - *other.0.get(i).unwrap_or(&0) as i64 - borrow;
      borrow = 0;
      if v < 0 {
        v += 1 << 32;
        borrow = 1;
      }
      out.push(v as u32);
    }
    let mut b = Big(out);
    b.trim();
    b
  }
  fn to_decimal(&self) -> String {
    if self.is_zero() {
      return "0".into();
    }
    let mut n = self.clone();
    let mut chunks = Vec::new();
    while !n.is_zero() {
      chunks.push(n.div_small(1_000_000_000));
    }
    let mut s = chunks.pop().unwrap_or(0).to_string();
    for c in chunks.iter().rev() {
      s.push_str(&format!("{c:09}"));
    }
    s
  }
}

/// `(-1)^neg * m * 2^e`, `m` at most 64 bits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LongDouble {
  neg: bool,
  m: u64,
  e: i64,
}

/// The largest binary exponent of a finite long double (its values are below 2^16384).
const MAX_BITS: i64 = 16384;

impl LongDouble {
  /// `n * 2^e` rounded to 64 bits (nearest, ties to even; `sticky`: something nonzero was
  /// below `n`'s last bit). None if it overflows.
  fn round(neg: bool, n: &Big, e: i64, sticky: bool) -> Option<LongDouble> {
    let bits = n.bits() as i64;
    let (m, mut e) = if bits <= 64 {
      (n.to_u64(), e)
    } else {
      let s = (bits - 64) as u64;
      let mut m = n.shr(s).to_u64();
      let half = n.bit(s - 1);
      let rest = sticky || n.any_below(s - 1);
      let mut e = e + s as i64;
      if half && (rest || m & 1 == 1) {
        m = match m.checked_add(1) {
          Some(m) => m,
          None => {
            e += 1;
            1 << 63
          }
        };
      }
      (m, e)
    };
    if m == 0 {
      e = 0;
    }
    let top = 64 - m.leading_zeros() as i64;
    (m == 0 || top + e <= MAX_BITS).then_some(LongDouble { neg, m, e })
  }

  /// `strtold` of a finite number's text (decimal or hexadecimal, already checked to be
  /// well formed). None if out of range (strtold's ERANGE: Redis refuses it).
  pub fn parse(s: &str) -> Option<LongDouble> {
    let (neg, body) = match s.as_bytes().first() {
      Some(b'-') => (true, &s[1..]),
      Some(b'+') => (false, &s[1..]),
      _ => (false, s),
    };
    let hex = body.len() > 2 && body.as_bytes()[..2].eq_ignore_ascii_case(b"0x");
    let (base, body) = if hex { (16, &body[2..]) } else { (10, body) };
    let marker: &[char] = if hex { &['p', 'P'] } else { &['e', 'E'] };
    let (mantissa, exp) = match body.find(marker) {
      Some(i) => (&body[..i], &body[i + 1..]),
      None => (body, "0"),
    };
    let exp: i64 = exp.parse().ok().or_else(|| {
      // an exponent too long for i64: its sign is all that matters
      let digits = exp.trim_start_matches(['+', '-']);
      (!digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit())).then_some(
        if exp.starts_with('-') {
          -1 << 40
        } else {
          1 << 40
        },
      )
    })?;
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut n = Big::default();
    for c in int.chars().chain(frac.chars()) {
      n.mul_add_small(base, c.to_digit(base)?);
    }
    if n.is_zero() {
      return Some(LongDouble { neg, m: 0, e: 0 });
    }
    if hex {
      return LongDouble::round(neg, &n, exp.saturating_sub(4 * frac.len() as i64), false);
    }
    let e10 = exp.saturating_sub(frac.len() as i64);
    // decimal magnitude: n has about bits*0.301 digits
    let magnitude = e10.saturating_add((n.bits() as f64 * std::f64::consts::LOG10_2) as i64);
    if magnitude > 4933 {
      return None;
    }
    if magnitude < -4952 {
      return None;
    }
    if e10 >= 0 {
      for _ in 0..e10 {
        n.mul_add_small(10, 0);
      }
      return LongDouble::round(neg, &n, 0, false);
    }
    let k = (-e10) as u64;
    let need = 66 + (k as f64 * std::f64::consts::LOG2_10).ceil() as i64 + 1 - n.bits() as i64;
    let s = need.max(0) as u64;
    let mut q = n.shl(s);
    let mut sticky = false;
    let mut left = k;
    while left > 0 {
      let step = left.min(9) as u32;
      sticky |= q.div_small(10u32.pow(step)) != 0;
      left -= step as u64;
    }
    LongDouble::round(neg, &q, -(s as i64), sticky)
  }

  /// The sum, rounded; None if it overflows (Redis: "increment would produce NaN or Infinity").
  pub fn add(self, other: LongDouble) -> Option<LongDouble> {
    if self.m == 0 {
      return Some(if other.m == 0 {
        LongDouble {
          neg: self.neg && other.neg,
          m: 0,
          e: 0,
        }
      } else {
        other
      });
    }
    if other.m == 0 {
      return Some(self);
    }
    let e = self.e.min(other.e);
    let a = Big::from_u64(self.m).shl((self.e - e) as u64);
    let b = Big::from_u64(other.m).shl((other.e - e) as u64);
    if self.neg == other.neg {
      return LongDouble::round(self.neg, &a.add(&b), e, false);
    }
    match a.cmp(&b) {
      std::cmp::Ordering::Equal => Some(LongDouble {
        neg: false,
        m: 0,
        e: 0,
      }),
      std::cmp::Ordering::Greater => LongDouble::round(self.neg, &a.sub(&b), e, false),
      std::cmp::Ordering::Less => LongDouble::round(other.neg, &b.sub(&a), e, false),
    }
  }

  /// `%.17Lf` with the trailing zeros (and a trailing '.') cut, "-0" as "0": Redis's
  /// `ld2string(..., LD_STR_HUMAN)`.
  pub fn human(&self) -> String {
    let digits = if self.e >= 0 {
      let mut n = Big::from_u64(self.m).shl(self.e as u64);
      for _ in 0..17 {
        n.mul_add_small(10, 0);
      }
      n
    } else {
      let mut n = Big::from_u64(self.m);
      for _ in 0..17 {
        n.mul_add_small(10, 0);
      }
      let s = (-self.e) as u64;
      let mut q = n.shr(s);
      let half = n.bit(s - 1);
      let rest = n.any_below(s - 1);
      if half && (rest || q.bit(0)) {
        q = q.add(&Big::from_u64(1));
      }
      q
    };
    let mut text = digits.to_decimal();
    while text.len() < 18 {
      text.insert(0, '0');
    }
    text.insert(text.len() - 17, '.');
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "0" || !self.neg {
      text.to_string()
    } else {
      format!("-{text}")
    }
  }
}

#[cfg(test)]
mod tests {
  use super::LongDouble;

  fn incr(a: &str, b: &str) -> String {
    let x = LongDouble::parse(a).unwrap();
    let y = LongDouble::parse(b).unwrap();
    x.add(y).unwrap().human()
  }

  #[test]
  fn as_redis_prints() {
    assert_eq!(incr("0", "-420.121"), "-420.121");
    assert_eq!(incr("0", "0.1"), "0.1");
    assert_eq!(incr("0.1", "0.2"), "0.3");
    assert_eq!(incr("10.5", "0.1"), "10.6");
    assert_eq!(incr("41", "666.738"), "707.73799999999999999");
    assert_eq!(incr("0x10", "1"), "17");
    assert_eq!(incr("3", "-3"), "0");
    assert_eq!(incr("0", "1e-320"), "0");
    assert_eq!(incr("1e308", "1e308").len(), 309);
    assert!(incr("1e308", "1e308").starts_with("199999999999999999993371759311691291"));
    assert!(incr("1e308", "1e308").ends_with("096"));
  }
}
