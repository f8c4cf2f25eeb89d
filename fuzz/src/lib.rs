//! Shared helpers of the fuzz targets: a cursor over the fuzz input, and the
//! small, obviously correct reference models the targets compare the real
//! code against.
//!
//! The references work on a whole stream at once, by direct definition
//! (no incremental state), so a bug in the incremental code cannot hide in
//! the same shape of logic here.
#![forbid(unsafe_code)]

/// Reads choices out of the fuzz input; past its end every read gives 0.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        let v = u16::from_le_bytes([self.byte(), self.byte()]) as usize;
        v % n
    }

    /// Up to `max` raw bytes.
    pub fn bytes(&mut self, max: usize) -> &'a [u8] {
        let n = (self.byte() as usize).min(max).min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}

/// Cuts `len` bytes into chunks at points chosen by `input` (at least one
/// chunk, possibly empty ones): how a socket might deliver them.
pub fn split_points(input: &mut Input<'_>, len: usize) -> Vec<(usize, usize)> {
    let mut cuts = Vec::new();
    let mut at = 0;
    while at < len {
        let step = match input.byte() {
            0 => len - at,
            b => (b as usize % 17).min(len - at),
        };
        cuts.push((at, at + step));
        at += step;
    }
    if cuts.is_empty() {
        cuts.push((0, 0));
    }
    cuts
}

/// True when the byte at `i` of `s` is a bare CR, a bare LF or a NUL (D2):
/// a CR not followed by LF, an LF not preceded by CR. A CR at the very end
/// is undecided and reported as not bare.
pub fn is_bare_at(s: &[u8], i: usize) -> bool {
    match s[i] {
        0 => true,
        b'\r' => i + 1 < s.len() && s[i + 1] != b'\n',
        b'\n' => i == 0 || s[i - 1] != b'\r',
        _ => false,
    }
}

/// The first bare byte of `s` (see [`is_bare_at`]).
pub fn first_bare(s: &[u8]) -> Option<usize> {
    (0..s.len()).find(|&i| is_bare_at(s, i))
}

/// True when `s` holds no bare CR, bare LF or NUL at all (a trailing CR
/// counts as bare here: nothing forwarded may end half a line ending
/// forever).
pub fn clean(s: &[u8]) -> bool {
    first_bare(s).is_none() && s.last() != Some(&b'\r')
}

/// D1 by definition: the end of message content is the first `.` CRLF that
/// starts a line, where a line starts at offset 0 of the content or right
/// after a CRLF. Returns the offset just past it.
pub fn reference_end_of_data(s: &[u8]) -> Option<usize> {
    (0..s.len())
        .find(|&i| s[i..].starts_with(b".\r\n") && (i == 0 || s[..i].ends_with(b"\r\n")))
        .map(|i| i + 3)
}

/// The first `CRLF . CRLF` at or after `from`, as a drain reads for it
/// (nothing before `from` counts as a line start). Returns the offset just
/// past it.
pub fn reference_drain_end(s: &[u8], from: usize) -> Option<usize> {
    s[from..]
        .windows(5)
        .position(|w| w == b"\r\n.\r\n")
        .map(|i| from + i + 5)
}

/// What scanning a whole content stream should come to (D1, D2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReferenceScan {
    /// No end yet; `out` is what may be forwarded so far.
    More { out: Vec<u8> },
    /// End of data after `consumed` bytes; `out` is what is forwarded.
    End { consumed: usize, out: Vec<u8> },
    /// Reject: the first bare byte is at `at`; `out` is the clean prefix.
    Bare { at: usize, out: Vec<u8> },
}

/// The reference for `DataScanner` over a whole stream: sanitize replaces
/// each bare byte by one space; reject stops at the first bare byte. A CR
/// at the very end is held back (its successor is unknown).
pub fn reference_scan(s: &[u8], sanitize: bool) -> ReferenceScan {
    let end = reference_end_of_data(s);
    let limit = end.unwrap_or(s.len());
    let content = &s[..limit];
    if !sanitize && let Some(at) = first_bare(content) {
        return ReferenceScan::Bare {
            at,
            out: content[..at].to_vec(),
        };
    }
    let mut out: Vec<u8> = (0..content.len())
        .map(|i| {
            if is_bare_at(content, i) {
                b' '
            } else {
                content[i]
            }
        })
        .collect();
    match end {
        Some(consumed) => ReferenceScan::End { consumed, out },
        None => {
            if out.last() == Some(&b'\r') {
                out.pop();
            }
            ReferenceScan::More { out }
        }
    }
}

/// The eleven variants of docs/protocol.md D1 that are *not* an end of data.
pub const NOT_ENDS: [&[u8]; 11] = {
    let all = replyfix::smtp::framing::NOT_END_OF_DATA;
    [
        all[0].1, all[1].1, all[2].1, all[3].1, all[4].1, all[5].1, all[6].1, all[7].1, all[8].1,
        all[9].1, all[10].1,
    ]
};
