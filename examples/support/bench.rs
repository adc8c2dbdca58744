//! Shared by the memory benchmarks: a large body generated on the fly, and the
//! process's peak resident memory.

#![allow(dead_code)]

use std::io::{Read, Seek, SeekFrom};

/// Byte `pos` of the [`Pattern`].
pub fn byte_at(pos: u64) -> u8 {
    (pos % 251) as u8
}

/// `len` bytes of a repeating pattern, never held in memory; seekable, as the drivers
/// seek an upload to its end for its length, then back to its start.
pub struct Pattern {
    pub pos: u64,
    pub len: u64,
}

impl Pattern {
    pub fn new(len: u64) -> Self {
        Pattern { pos: 0, len }
    }
}

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (self.len - self.pos).min(buf.len() as u64) as usize;
        for (i, b) in buf[..n].iter_mut().enumerate() {
            *b = byte_at(self.pos + i as u64);
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Pattern {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        self.pos = match to {
            SeekFrom::Start(p) => p,
            SeekFrom::End(d) => self.len.saturating_add_signed(d),
            SeekFrom::Current(d) => self.pos.saturating_add_signed(d),
        }
        .min(self.len);
        Ok(self.pos)
    }
}

/// The process's peak resident memory (`VmHWM`), KiB.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
