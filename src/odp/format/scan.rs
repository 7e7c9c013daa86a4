//! The scanner: OVS's `ovs_scan` conventions over a string, and the
//! `SCAN_BEGIN ... SCAN_FINISH` field loop.

use std::net::Ipv6Addr;

use super::error::{FormatError, PResult};
use super::tables::FlagName;

/// `MAX_ODP_NESTED`: how deep `encap(...)`, `sample(...)` and `clone(...)` nest.
const MAX_NESTED: usize = 32;

/// A position in the text being parsed, and how deeply the parse is nested.
pub(super) struct Cursor<'a> {
    pub(super) text: &'a str,
    pub(super) pos: usize,
    depth: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        Self { text, pos: 0, depth: 0 }
    }

    pub(super) fn rest(&self) -> &'a str {
        self.text.get(self.pos..).unwrap_or("")
    }

    pub(super) fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<u8> {
        self.text.as_bytes().get(self.pos + ahead).copied()
    }

    pub(super) fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }

    pub(super) fn starts(&self, lit: &str) -> bool {
        self.rest().starts_with(lit)
    }

    pub(super) fn eat(&mut self, lit: &str) -> bool {
        let ok = self.starts(lit);
        if ok {
            self.pos += lit.len();
        }
        ok
    }

    /// `name=`, as OVS's `strncmp(s, "name=", ...)` field match.
    pub(super) fn eat_field(&mut self, name: &str) -> bool {
        let ok = self.starts(name) && self.peek_at(name.len()) == Some(b'=');
        if ok {
            self.pos += name.len() + 1;
        }
        ok
    }

    pub(super) fn expect(&mut self, lit: &str) -> PResult<()> {
        if self.eat(lit) {
            Ok(())
        } else {
            Err(self.syntax(format_args!("{lit:?}")))
        }
    }

    fn near(&self, at: usize) -> String {
        self.text.get(at..).unwrap_or("").chars().take(24).collect()
    }

    pub(super) fn syntax(&self, expected: impl std::fmt::Display) -> FormatError {
        FormatError::Syntax { offset: self.pos, near: self.near(self.pos), expected: expected.to_string() }
    }

    pub(super) fn out_of_range(&self, at: usize, what: impl std::fmt::Display) -> FormatError {
        FormatError::OutOfRange { offset: at, near: self.near(at), what: what.to_string() }
    }

    pub(super) fn unsupported(&self, at: usize, what: impl std::fmt::Display) -> FormatError {
        FormatError::Unsupported { offset: at, near: self.near(at), what: what.to_string() }
    }

    pub(super) fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth >= MAX_NESTED {
            return Err(FormatError::TooDeep { offset: self.pos, max: MAX_NESTED });
        }
        Ok(())
    }

    pub(super) fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// The characters OVS skips between actions and key attributes.
    pub(super) fn skip_delims(&mut self) {
        while matches!(self.peek(), Some(b',' | b' ' | b'\t' | b'\r' | b'\n')) {
            self.pos += 1;
        }
    }

    /// `isspace`, which `ovs_scan` skips before a number.
    pub(super) fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')) {
            self.pos += 1;
        }
    }

    /// A number as `ovs_scan` reads one: base 0 is `%i` (decimal, `0x` hex or
    /// `0` octal), 10 is `%u`/`%d`, 16 is `%x` (with an optional `0x`).
    /// Unlike OVS, a negative or too-large value is an error, not truncated.
    pub(super) fn num(&mut self, base: u32, max: u128) -> PResult<u128> {
        self.skip_space();
        let start = self.pos;
        let negative = self.peek() == Some(b'-');
        if matches!(self.peek(), Some(b'-' | b'+')) {
            self.pos += 1;
        }
        let mut radix = base;
        if (base == 0 || base == 16) && self.peek() == Some(b'0') && matches!(self.peek_at(1), Some(b'x' | b'X')) {
            radix = 16;
            self.pos += 2;
        } else if base == 0 {
            radix = if self.peek() == Some(b'0') { 8 } else { 10 };
        }
        let mut value: u128 = 0;
        let mut digits = 0;
        let mut overflow = false;
        while let Some(d) = self.peek().and_then(|c| (c as char).to_digit(radix)) {
            match value.checked_mul(radix.into()).and_then(|v| v.checked_add(d.into())) {
                Some(v) => value = v,
                None => overflow = true,
            }
            digits += 1;
            self.pos += 1;
        }
        if digits == 0 {
            self.pos = start;
            return Err(self.syntax("a number"));
        }
        if negative && value != 0 {
            return Err(self.out_of_range(start, "negative number"));
        }
        if overflow || value > max {
            return Err(self.out_of_range(start, format_args!("larger than {max:#x}")));
        }
        Ok(value)
    }

    pub(super) fn num_u8(&mut self, base: u32) -> PResult<u8> {
        Ok(self.num(base, 0xff)? as u8)
    }
    pub(super) fn num_u16(&mut self, base: u32) -> PResult<u16> {
        Ok(self.num(base, 0xffff)? as u16)
    }
    pub(super) fn num_u32(&mut self, base: u32) -> PResult<u32> {
        Ok(self.num(base, u32::MAX.into())? as u32)
    }
    pub(super) fn num_u64(&mut self, base: u32) -> PResult<u64> {
        Ok(self.num(base, u64::MAX.into())? as u64)
    }

    /// `IP_SCAN_FMT`: four `%hhu` separated by dots.
    pub(super) fn ipv4(&mut self) -> PResult<[u8; 4]> {
        let mut a = [0u8; 4];
        for (i, b) in a.iter_mut().enumerate() {
            if i > 0 {
                self.expect(".")?;
            }
            *b = self.num_u8(10)?;
        }
        Ok(a)
    }

    /// `ETH_ADDR_SCAN_FMT`: six `%hhx` separated by colons.
    pub(super) fn mac(&mut self) -> PResult<[u8; 6]> {
        let mut a = [0u8; 6];
        for (i, b) in a.iter_mut().enumerate() {
            if i > 0 {
                self.expect(":")?;
            }
            *b = self.num_u8(16)?;
        }
        Ok(a)
    }

    /// `IPV6_SCAN_FMT` (`%46[0-9a-fA-F:.]`) and `inet_pton`.
    pub(super) fn ipv6(&mut self) -> PResult<[u8; 16]> {
        let start = self.pos;
        let len =
            self.rest().bytes().take(46).take_while(|c| c.is_ascii_hexdigit() || *c == b':' || *c == b'.').count();
        let word = &self.rest()[..len];
        match word.parse::<Ipv6Addr>() {
            Ok(a) if len > 0 => {
                self.pos += len;
                Ok(a.octets())
            }
            _ => {
                self.pos = start;
                Err(self.syntax("an IPv6 address"))
            }
        }
    }

    /// `scan_u128` for `ct_label`: `0x` and up to 32 hex digits, or a 64-bit number.
    pub(super) fn u128(&mut self) -> PResult<u128> {
        let start = self.pos;
        if self.eat("0x") || self.eat("0X") {
            let len = self.rest().bytes().take_while(u8::is_ascii_hexdigit).count();
            let digits = self.rest()[..len].trim_start_matches('0');
            if digits.len() > 32 {
                return Err(self.out_of_range(start, "more than 128 bits"));
            }
            self.pos += len;
            return Ok(if digits.is_empty() { 0 } else { u128::from_str_radix(digits, 16).unwrap_or(0) });
        }
        self.num(0, u64::MAX.into())
    }

    /// `%7[a-z]` then `no`, `first` or `later`.
    pub(super) fn frag(&mut self) -> PResult<u8> {
        let len = self.rest().bytes().take(7).take_while(u8::is_ascii_lowercase).count();
        let v = match &self.rest()[..len] {
            "no" => 0,
            "first" => 1,
            "later" => 2,
            _ => return Err(self.syntax("frag=no, first or later")),
        };
        self.pos += len;
        Ok(v)
    }

    /// `uuid_from_string_prefix`: 8-4-4-4-12 hex digits.
    pub(super) fn uuid(&mut self) -> PResult<()> {
        for (i, n) in [8, 4, 4, 4, 12].into_iter().enumerate() {
            if i > 0 {
                self.expect("-")?;
            }
            if self.rest().bytes().take(n).filter(u8::is_ascii_hexdigit).count() != n {
                return Err(self.syntax("a UUID after ufid:"));
            }
            self.pos += n;
        }
        Ok(())
    }

    /// `parse_flags` with `)` as the end (which is not consumed). Accepts
    /// `name|name|0x..` (the mask is then all ones) and, when `masked`, also
    /// `+name-name` and `value/mask`.
    pub(super) fn flags(&mut self, name: FlagName, allowed: u32, masked: bool) -> PResult<(u32, u32)> {
        let start = self.pos;
        if masked {
            let save = self.pos;
            if let (Ok(v), true) = (self.num(0, u32::MAX.into()), self.eat("/")) {
                let m = self.num_u32(0)?;
                if (v as u32 | m) & !allowed != 0 {
                    return Err(self.out_of_range(start, "unknown flag bits"));
                }
                return Ok((v as u32, m));
            }
            self.pos = save;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                let (mut flags, mut mask) = (0u32, 0u32);
                while self.peek() != Some(b')') {
                    let set = match self.peek() {
                        Some(b'+') => true,
                        Some(b'-') => false,
                        _ => return Err(self.syntax("'+' or '-' before each flag")),
                    };
                    self.pos += 1;
                    let at = self.pos;
                    let bit = self.flag_name(name, b"+-)").ok_or_else(|| self.syntax("a flag name"))?;
                    if mask & bit != 0 {
                        return Err(self.syntax("each flag only once"));
                    }
                    if bit & !allowed != 0 {
                        return Err(self.unsupported(at, "this flag here"));
                    }
                    if set {
                        flags |= bit;
                    }
                    mask |= bit;
                }
                return Ok((flags, mask));
            }
        }
        let mut flags = 0u32;
        while self.peek() != Some(b')') {
            if self.at_end() {
                return Err(self.syntax("')'"));
            }
            if matches!(self.peek(), Some(b'0'..=b'9' | b' ' | b'+' | b'-')) {
                let at = self.pos;
                let v = self.num(0, u64::MAX.into())?;
                if v & !u128::from(allowed) != 0 {
                    return Err(self.out_of_range(at, "unknown flag bits"));
                }
                flags |= v as u32;
                self.eat("|");
                continue;
            }
            let bit = self.flag_name(name, b"|)").ok_or_else(|| self.syntax("a flag name"))?;
            if bit & !allowed != 0 {
                return Err(self.syntax("a flag allowed here"));
            }
            flags |= bit;
            self.eat("|");
        }
        Ok((flags, u32::MAX))
    }

    /// The first flag, lowest bit first, whose name is here followed by one of `ends`.
    fn flag_name(&mut self, name: FlagName, ends: &[u8]) -> Option<u32> {
        (0..32).map(|i| 1u32 << i).find_map(|bit| {
            let s = name(bit)?;
            let next = self.rest().as_bytes().get(s.len()).copied();
            (self.starts(s) && next.is_some_and(|c| ends.contains(&c))).then(|| {
                self.pos += s.len();
                bit
            })
        })
    }

    /// `value[/mask]` where the mask defaults to `full`.
    pub(super) fn masked<T: Copy>(&mut self, scan: fn(&mut Self) -> PResult<T>, full: T) -> PResult<(T, T)> {
        let v = scan(self)?;
        let m = if self.eat("/") { scan(self)? } else { full };
        Ok((v, m))
    }

    /// The name of an attribute or action at `at`, for messages.
    pub(super) fn word_at(&self, at: usize) -> String {
        self.text.get(at..).unwrap_or("").chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect()
    }
}

/// Runs OVS's `SCAN_BEGIN ... SCAN_FINISH` loop: fields separated by commas,
/// closed by `)`. A trailing comma before `)` is accepted, as in OVS.
pub(super) fn scan_fields(c: &mut Cursor<'_>, mut field: impl FnMut(&mut Cursor<'_>) -> PResult<bool>) -> PResult<()> {
    loop {
        let matched = field(c)?;
        match c.peek() {
            Some(b',') if matched => c.pos += 1,
            Some(b')') => {
                c.pos += 1;
                return Ok(());
            }
            _ if matched => return Err(c.syntax("',' or ')'")),
            _ => return Err(c.syntax("a field name or ')'")),
        }
    }
}
