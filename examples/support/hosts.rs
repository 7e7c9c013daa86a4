//! The hosts file both DNS benchmark examples read: `ADDRESS NAME` per
//! line, `#` comments.

use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// One line: its number (from 0), address and name.
pub struct Host {
    pub line: usize,
    pub addr: Ipv4Addr,
    pub name: String,
}

/// Reads `path`; an error names the file and line. A file with no names is
/// an error.
pub fn read(path: &Path) -> Result<Vec<Host>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default();
        let mut words = line.split_whitespace();
        let (Some(addr), Some(name)) = (words.next(), words.next()) else { continue };
        let addr: Ipv4Addr =
            addr.parse().with_context(|| format!("{}:{}: bad address {addr:?}", path.display(), n + 1))?;
        out.push(Host { line: n, addr, name: name.to_string() });
    }
    if out.is_empty() {
        bail!("{}: no names", path.display());
    }
    Ok(out)
}
