//! Client-side framing: command lines, DATA message content, BDAT chunks.
//!
//! This module owns three small sans-IO framers the relay feeds with bytes
//! read from the client:
//!
//! - [`LineFramer`] cuts command lines out of the relay's read buffer, with a
//!   byte bound per line (R1).
//! - [`DataScanner`] walks message content after the upstream's `354`,
//!   finds the one true end of data `CRLF . CRLF` (D1) and makes sure no bare
//!   CR, bare LF or NUL is ever written upstream (D2), streaming (D6).
//! - [`EndOfDataSkipper`] reads a rejected message to its real end without
//!   forwarding anything (D2, F2).
//!
//! It must never do I/O, decide policy (the caller picks `reject` or
//! `sanitize`, and what to answer), hold more than a bounded number of bytes,
//! or turn a bare byte into a line ending.
//!
//! # Dot-stuffing under `sanitize` (D3)
//!
//! `sanitize` replaces a bare CR, bare LF or NUL with one space, byte for
//! byte, and a CR is only ever written together with the LF that follows it.
//! So a CRLF in the output is exactly a CRLF of the input at the same offset,
//! and line starts in the output are exactly the line starts of the input.
//! A replaced byte becomes a space, never a `.`, so every output line that
//! starts with `.` started with `.` in the client's (already dot-stuffed)
//! stream: stuffing is preserved byte for byte, no line is re-framed, and
//! `CRLF . CRLF` appears in the output only where it was in the input (where
//! the scanner stops). Nothing needs re-stuffing; the tests
//! `sanitize_never_creates_a_dot_line_d3` and the differential property test
//! check this.

use bytes::{BufMut, Bytes, BytesMut};

/// A command line (or its remainder) was longer than the framer's bound
/// (R1). Its bytes were discarded; the relay answers it and goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("command line longer than the line bound")]
pub struct LineTooLong;

/// Client command line framer (R1).
///
/// A line ends in CRLF; a bare LF is accepted as a line end too (tolerant,
/// like Postfix). `max_line` bounds a whole line *including* its ending, as
/// RFC 5321 4.5.3.1.4 counts command lines. The framer keeps no bytes of its
/// own: it takes lines out of the caller's buffer and, while discarding an
/// over-long line, empties that buffer so memory stays bounded.
#[derive(Debug, Clone)]
pub struct LineFramer {
    max_line: usize,
    discarding: bool,
}

impl LineFramer {
    /// A framer for lines of at most `max_line` bytes including the line
    /// ending (values below 2 are raised to 2, room for a CRLF).
    pub fn new(max_line: usize) -> Self {
        LineFramer {
            max_line: max_line.max(2),
            discarding: false,
        }
    }

    /// Takes the next complete line from the front of `buf` (a buffer the
    /// relay fills from the socket), without its line ending.
    ///
    /// Returns `None` when no complete line is there yet; `buf` then holds
    /// fewer than `max_line` bytes. A line longer than `max_line` gives
    /// `Some(Err(LineTooLong))` once, its bytes removed from `buf`; the rest
    /// of it (up to the next LF, possibly in later calls) is removed too.
    ///
    /// Cost: each call scans at most `max_line` bytes; no state but the
    /// discarding flag, so the caller may take bytes out of `buf` between
    /// calls (for message content) without confusing the framer.
    pub fn next_line(&mut self, buf: &mut BytesMut) -> Option<Result<Bytes, LineTooLong>> {
        if self.discarding {
            match find_lf(buf) {
                Some(i) => {
                    let _ = buf.split_to(i + 1);
                    self.discarding = false;
                }
                None => {
                    buf.clear();
                    return None;
                }
            }
        }
        let window = buf.len().min(self.max_line);
        if let Some(i) = find_lf(&buf[..window]) {
            let line = buf.split_to(i + 1).freeze();
            let end = if i > 0 && line[i - 1] == b'\r' {
                i - 1
            } else {
                i
            };
            return Some(Ok(line.slice(..end)));
        }
        if buf.len() < self.max_line {
            return None;
        }
        // Too long: drop it, and its remainder up to a line end if one is
        // already here.
        match find_lf(&buf[self.max_line..]) {
            Some(j) => {
                let _ = buf.split_to(self.max_line + j + 1);
            }
            None => {
                buf.clear();
                self.discarding = true;
            }
        }
        Some(Err(LineTooLong))
    }

    /// True while the remainder of an over-long line is being dropped.
    pub fn is_discarding(&self) -> bool {
        self.discarding
    }
}

fn find_lf(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

/// docs/protocol.md D1: the eleven byte sequences that look like an end of data
/// to some implementation but are *not* one here (name, bytes). Spaces in a
/// name only separate tokens: `CRLF.CR CRLF` is `\r\n.\r\r\n`. Shared by the
/// tests, the smuggling suite and the fuzz targets.
pub const NOT_END_OF_DATA: [(&str, &[u8]); 11] = [
    ("LF.LF", b"\n.\n"),
    ("CR.CR", b"\r.\r"),
    ("CR.LF", b"\r.\n"),
    ("LF.CR", b"\n.\r"),
    ("LF.CRLF", b"\n.\r\n"),
    ("CR.CRLF", b"\r.\r\n"),
    ("CRLF.LF", b"\r\n.\n"),
    ("CRLF.CR", b"\r\n.\r"),
    ("CRLF NUL . CRLF", b"\r\n\0.\r\n"),
    ("CRLF.CR CRLF", b"\r\n.\r\r\n"),
    ("CR CRLF.CR CRLF", b"\r\r\n.\r\r\n"),
];

/// A bare byte that must never be forwarded inside message content (D2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BareByte {
    /// A CR not followed by LF.
    Cr,
    /// An LF not preceded by CR.
    Lf,
    /// A NUL byte.
    Nul,
}

impl BareByte {
    /// The byte itself.
    pub const fn byte(self) -> u8 {
        match self {
            BareByte::Cr => b'\r',
            BareByte::Lf => b'\n',
            BareByte::Nul => 0,
        }
    }
}

/// What one [`DataScanner::scan`] call found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataScan {
    /// All input was consumed and the end of data was not reached.
    More,
    /// The end of data `CRLF . CRLF` (D1) ends at `consumed` bytes into the
    /// input; `out` ends with its `.\r\n`. Later input bytes are the next
    /// command and were not consumed.
    End { consumed: usize },
    /// A bare byte (reject policy, D2). `at` is its offset in the input;
    /// for a CR held back from the previous call (see [`DataScanner::scan`])
    /// `at` is 0, the byte that showed it bare. `out` holds only the clean
    /// bytes before it. To drain the client, feed `input[at..]` to
    /// [`EndOfDataSkipper::new(false)`](EndOfDataSkipper::new).
    Bare { at: usize, byte: BareByte },
}

/// Where the scanner stands in the content stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Right after a CRLF (or at the start of content, D1).
    LineStart,
    /// After CRLF ".".
    Dot,
    /// Inside a line.
    Mid,
    /// After a CR whose successor is not known yet; the CR is not yet in
    /// `out`.
    Cr,
    /// After CRLF "." CR; the CR is not yet in `out`.
    DotCr,
}

/// Message content scanner for DATA (D1–D3, D6).
///
/// The state starts "right after a CRLF" (D1: a first line `.` ends an empty
/// message). It keeps no bytes: only a state, so memory does not grow with
/// the message.
#[derive(Debug, Clone)]
pub struct DataScanner {
    state: State,
}

impl Default for DataScanner {
    fn default() -> Self {
        DataScanner::new()
    }
}

impl DataScanner {
    /// A scanner at the start of message content.
    pub fn new() -> Self {
        DataScanner {
            state: State::LineStart,
        }
    }

    /// Scans `input`, appending the bytes to forward upstream to `out`
    /// (never more than `input.len() + 1` bytes).
    ///
    /// - `sanitize == false` (policy `reject`, D2): stops at the first bare
    ///   CR, bare LF or NUL and returns [`DataScan::Bare`]; the bare byte is
    ///   never written.
    /// - `sanitize == true`: each bare CR, LF or NUL becomes one space
    ///   (never CRLF, D2) and scanning goes on.
    ///
    /// A CR at the very end of `input` is held back (not yet in `out`) until
    /// the next call shows whether an LF follows.
    ///
    /// The only end of data is `CRLF . CRLF` (D1); `LF.LF`, `CR.CR`,
    /// `CRLF.CR CRLF`, `CRLF NUL . CRLF` and every other variant are content
    /// (and bare bytes). Once [`DataScan::End`] is returned the scanner is
    /// back at a line start, as if new.
    pub fn scan(&mut self, input: &[u8], sanitize: bool, out: &mut BytesMut) -> DataScan {
        out.reserve(input.len() + 1);
        // `input[..flushed]` is accounted for in `out` (copied or replaced).
        let mut flushed = 0;
        // The pending CR (state Cr/DotCr) came from an earlier call.
        let mut cr_held = matches!(self.state, State::Cr | State::DotCr);
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Cr | State::DotCr => {
                    if b == b'\n' {
                        if cr_held {
                            out.put_u8(b'\r');
                            cr_held = false;
                        }
                        if self.state == State::DotCr {
                            out.put_slice(&input[flushed..=i]);
                            self.state = State::LineStart;
                            return DataScan::End { consumed: i + 1 };
                        }
                        self.state = State::LineStart;
                        i += 1;
                        continue;
                    }
                    // The CR is bare. `b` is looked at again below, mid-line.
                    let at = if cr_held { i } else { i - 1 };
                    out.put_slice(&input[flushed..at]);
                    self.state = State::Mid;
                    if !sanitize {
                        return DataScan::Bare {
                            at,
                            byte: BareByte::Cr,
                        };
                    }
                    out.put_u8(b' ');
                    flushed = i;
                    cr_held = false;
                    continue;
                }
                State::LineStart | State::Dot | State::Mid => {}
            }
            let bare = match b {
                b'\r' => {
                    self.state = if self.state == State::Dot {
                        State::DotCr
                    } else {
                        State::Cr
                    };
                    i += 1;
                    continue;
                }
                b'\n' => BareByte::Lf,
                0 => BareByte::Nul,
                b'.' if self.state == State::LineStart => {
                    self.state = State::Dot;
                    i += 1;
                    continue;
                }
                _ => {
                    // Fast path: the rest of a line up to the next byte of
                    // interest passes untouched.
                    self.state = State::Mid;
                    i += 1;
                    i += memchr::memchr3(b'\r', b'\n', 0, &input[i..]).unwrap_or(input.len() - i);
                    continue;
                }
            };
            out.put_slice(&input[flushed..i]);
            self.state = State::Mid;
            if !sanitize {
                return DataScan::Bare { at: i, byte: bare };
            }
            out.put_u8(b' ');
            i += 1;
            flushed = i;
        }
        // Hold back a CR that ends this input; a CR held from an earlier
        // call with no input now stays held.
        let end = if matches!(self.state, State::Cr | State::DotCr) && !cr_held {
            input.len() - 1
        } else {
            input.len()
        };
        out.put_slice(&input[flushed..end]);
        DataScan::More
    }

    /// A skipper that continues from exactly where this scanner stands, to
    /// drain the client to its end of data when forwarding stops for another
    /// reason than a bare byte (upstream lost mid-DATA, F2).
    pub fn skipper(&self) -> EndOfDataSkipper {
        EndOfDataSkipper {
            matched: match self.state {
                State::LineStart => 2,
                State::Dot => 3,
                State::DotCr => 4,
                State::Cr => 1,
                State::Mid => 0,
            },
        }
    }
}

/// The end of data (D1), as the skipper matches it.
const END_OF_DATA: &[u8; 5] = b"\r\n.\r\n";

/// After a reject (D2) or a lost upstream (F2), reads the client to its real
/// `CRLF . CRLF` without forwarding anything. It keeps one small counter;
/// the size and time bound of the drain is the caller's.
#[derive(Debug, Clone)]
pub struct EndOfDataSkipper {
    /// How many bytes of [`END_OF_DATA`] are matched; 5 when done.
    matched: u8,
}

impl EndOfDataSkipper {
    /// A skipper; `at_line_start` says the next byte starts a line (right
    /// after a CRLF, or the start of content), where `.` CRLF ends the data.
    pub fn new(at_line_start: bool) -> Self {
        EndOfDataSkipper {
            matched: if at_line_start { 2 } else { 0 },
        }
    }

    /// Reads `input`; returns the bytes consumed up to and including the end
    /// of data when it is in `input` (later bytes are the next command), or
    /// `None` when all input was skipped and the end is still to come. Once
    /// the end was found, every later call returns `Some(0)`.
    pub fn skip(&mut self, input: &[u8]) -> Option<usize> {
        if self.is_done() {
            return Some(0);
        }
        for (i, &b) in input.iter().enumerate() {
            self.matched = match (self.matched, b) {
                (_, b'\r') if self.matched != 3 => 1,
                (1, b'\n') => 2,
                (2, b'.') => 3,
                (3, b'\r') => 4,
                (4, b'\n') => 5,
                _ => 0,
            };
            if self.is_done() {
                return Some(i + 1);
            }
        }
        None
    }

    /// True once the end of data was read.
    pub fn is_done(&self) -> bool {
        usize::from(self.matched) == END_OF_DATA.len()
    }
}

/// Counts the octets of one `BDAT n` chunk (D5, RFC 3030): exactly n octets
/// follow the command and are never parsed as lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkCounter {
    remaining: u64,
}

impl ChunkCounter {
    /// A counter for a chunk of `size` octets.
    pub const fn new(size: u64) -> Self {
        ChunkCounter { remaining: size }
    }

    /// Of `available` bytes at hand, how many belong to the chunk; they are
    /// counted as taken. The rest is the next command.
    pub fn take(&mut self, available: usize) -> usize {
        let n = u64::try_from(available)
            .unwrap_or(u64::MAX)
            .min(self.remaining);
        self.remaining -= n;
        // n <= available, so it fits in usize.
        usize::try_from(n).unwrap_or(available)
    }

    /// Octets of the chunk still to come.
    pub const fn remaining(&self) -> u64 {
        self.remaining
    }

    /// True when the whole chunk was taken.
    pub const fn is_done(&self) -> bool {
        self.remaining == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // ---- helpers -------------------------------------------------------

    /// What a whole run of the scanner over a stream came to, in absolute
    /// stream offsets.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Outcome {
        More,
        End(usize),
        Bare(usize, BareByte),
    }

    /// Feeds `stream` cut at `cuts` (chunk lengths, the last chunk takes the
    /// rest) and returns the output and the outcome.
    fn run(stream: &[u8], cuts: &[usize], sanitize: bool) -> (Vec<u8>, Outcome) {
        let mut s = DataScanner::new();
        let mut out = BytesMut::new();
        let mut pos = 0;
        let mut k = 0;
        let mut held = false;
        loop {
            let n = cuts
                .get(k)
                .copied()
                .unwrap_or(stream.len() - pos)
                .min(stream.len() - pos);
            k += 1;
            let chunk = &stream[pos..pos + n];
            match s.scan(chunk, sanitize, &mut out) {
                DataScan::More => {}
                DataScan::End { consumed } => {
                    assert!(consumed <= chunk.len());
                    return (out.to_vec(), Outcome::End(pos + consumed));
                }
                DataScan::Bare { at, byte } => {
                    assert!(at < chunk.len().max(1));
                    // A CR held back from the previous chunk is reported at 0.
                    let abs = if byte == BareByte::Cr && at == 0 && held {
                        pos - 1
                    } else {
                        pos + at
                    };
                    assert_eq!(stream[abs], byte.byte());
                    return (out.to_vec(), Outcome::Bare(abs, byte));
                }
            }
            held = matches!(s.state, State::Cr | State::DotCr);
            pos += n;
            if pos == stream.len() {
                return (out.to_vec(), Outcome::More);
            }
        }
    }

    fn run_whole(stream: &[u8], sanitize: bool) -> (Vec<u8>, Outcome) {
        run(stream, &[], sanitize)
    }

    /// Every way of cutting `stream` into two chunks, and one byte at a time.
    fn chunkings(stream: &[u8]) -> Vec<Vec<usize>> {
        let mut all: Vec<Vec<usize>> = (0..=stream.len()).map(|k| vec![k]).collect();
        all.push(vec![1; stream.len()]);
        all
    }

    /// No bare CR, bare LF or NUL (D2): every CR is followed by LF, every LF
    /// preceded by CR.
    fn assert_no_bare(out: &[u8]) {
        for (i, &b) in out.iter().enumerate() {
            match b {
                0 => panic!("NUL in out at {i}: {out:?}"),
                b'\r' => assert_eq!(out.get(i + 1), Some(&b'\n'), "bare CR at {i}: {out:?}"),
                b'\n' => assert!(i > 0 && out[i - 1] == b'\r', "bare LF at {i}: {out:?}"),
                _ => {}
            }
        }
    }

    // ---- reference model (whole buffer, obviously correct) ------------

    /// Position just past the first `CRLF . CRLF`, the stream counting as
    /// preceded by CRLF (D1).
    fn ref_end(stream: &[u8]) -> Option<usize> {
        let mut p = b"\r\n".to_vec();
        p.extend_from_slice(stream);
        p.windows(5)
            .position(|w| w == b"\r\n.\r\n")
            .map(|i| i + 5 - 2)
    }

    /// Is `stream[i]` a bare byte, judged with the whole stream in view?
    /// A CR at the very end is undecided (`None`).
    fn ref_bare(stream: &[u8], i: usize) -> Option<Option<BareByte>> {
        Some(match stream[i] {
            0 => Some(BareByte::Nul),
            b'\n' if i == 0 || stream[i - 1] != b'\r' => Some(BareByte::Lf),
            b'\r' => match stream.get(i + 1) {
                None => return None,
                Some(b'\n') => None,
                Some(_) => Some(BareByte::Cr),
            },
            _ => None,
        })
    }

    fn ref_run(stream: &[u8], sanitize: bool) -> (Vec<u8>, Outcome) {
        let end = ref_end(stream);
        let limit = end.unwrap_or(stream.len());
        let mut out = Vec::new();
        for i in 0..limit {
            match ref_bare(stream, i) {
                None => {} // trailing CR, held back
                Some(None) => out.push(stream[i]),
                Some(Some(_)) if sanitize => out.push(b' '),
                Some(Some(b)) => return (out, Outcome::Bare(i, b)),
            }
        }
        (out, end.map_or(Outcome::More, Outcome::End))
    }

    // ---- D1: the eleven non-ends ---------------------------------------

    /// Checks one non-end variant in every framing, with both policies.
    fn check_not_end(name: &str, variant: &[u8]) {
        for prefix in [&b""[..], b"Subject: x"] {
            for (suffix, real_end) in [(&b"tail"[..], false), (b"\r\n.\r\n", true)] {
                let stream = [prefix, variant, suffix].concat();
                for cuts in chunkings(&stream) {
                    let (out, got) = run(&stream, &cuts, true);
                    assert_no_bare(&out);
                    let want = if real_end {
                        Outcome::End(stream.len())
                    } else {
                        Outcome::More
                    };
                    assert_eq!(got, want, "{name} sanitize {stream:?} cut {cuts:?}");
                    assert_eq!(out.len(), stream.len(), "{name}: one byte out per byte in");

                    let (out, got) = run(&stream, &cuts, false);
                    assert_no_bare(&out);
                    assert!(
                        matches!(got, Outcome::Bare(at, _) if at >= prefix.len() && at < prefix.len() + variant.len()),
                        "{name} reject {stream:?} cut {cuts:?}: {got:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn lf_dot_lf_is_not_end_of_data_d1() {
        check_not_end(NOT_END_OF_DATA[0].0, NOT_END_OF_DATA[0].1);
    }

    #[test]
    fn cr_dot_cr_is_not_end_of_data_d1() {
        check_not_end(NOT_END_OF_DATA[1].0, NOT_END_OF_DATA[1].1);
    }

    #[test]
    fn cr_dot_lf_is_not_end_of_data_d1() {
        check_not_end(NOT_END_OF_DATA[2].0, NOT_END_OF_DATA[2].1);
    }

    #[test]
    fn lf_dot_cr_is_not_end_of_data_d1() {
        check_not_end(NOT_END_OF_DATA[3].0, NOT_END_OF_DATA[3].1);
    }

    #[test]
    fn lf_dot_crlf_is_not_end_of_data_d1() {
        check_not_end(NOT_END_OF_DATA[4].0, NOT_END_OF_DATA[4].1);
    }

    #[test]
    fn cr_dot_crlf_is_not_end_of_data_d1() {
        check_not_end(NOT_END_OF_DATA[5].0, NOT_END_OF_DATA[5].1);
    }

    #[test]
    fn crlf_dot_lf_is_not_end_of_data_d1() {
        check_not_end(NOT_END_OF_DATA[6].0, NOT_END_OF_DATA[6].1);
    }

    #[test]
    fn crlf_dot_cr_is_not_end_of_data_d1() {
        check_not_end(NOT_END_OF_DATA[7].0, NOT_END_OF_DATA[7].1);
    }

    #[test]
    fn crlf_nul_dot_crlf_is_not_end_of_data_d1() {
        check_not_end(NOT_END_OF_DATA[8].0, NOT_END_OF_DATA[8].1);
    }

    #[test]
    fn crlf_dot_cr_crlf_is_not_end_of_data_d1() {
        check_not_end(NOT_END_OF_DATA[9].0, NOT_END_OF_DATA[9].1);
    }

    #[test]
    fn cr_crlf_dot_cr_crlf_is_not_end_of_data_d1() {
        check_not_end(NOT_END_OF_DATA[10].0, NOT_END_OF_DATA[10].1);
    }

    #[test]
    fn sanitized_non_ends_become_spaces_never_crlf_d2() {
        let (out, got) = run_whole(b"a\n.\nb\r\n.\r\rc", true);
        assert_eq!(got, Outcome::More);
        assert_eq!(out, b"a . b\r\n.  c");
        let (out, got) = run_whole(b"\r\r\n.\r\r\n", true);
        assert_eq!(got, Outcome::More);
        assert_eq!(out, b" \r\n. \r\n");
    }

    #[test]
    fn sanitize_never_creates_a_dot_line_d3() {
        // Bare bytes around dots: no output line is "." alone, and every
        // output line starting with "." started with "." in the input.
        let stream = b"x\n.\r\n..y\r\n\0.\r\n.\r.\r\nz";
        let (out, got) = run_whole(stream, true);
        assert_eq!(got, Outcome::More);
        assert_eq!(out.len(), stream.len());
        assert!(!out.windows(5).any(|w| w == b"\r\n.\r\n"));
        for (i, w) in out.windows(3).enumerate() {
            if w == b"\r\n." {
                assert_eq!(stream[i..i + 3], *w);
            }
        }
    }

    // ---- D1: real ends -------------------------------------------------

    #[test]
    fn first_line_dot_ends_an_empty_message_d1() {
        for cuts in chunkings(b".\r\n") {
            for sanitize in [false, true] {
                let (out, got) = run(b".\r\n", &cuts, sanitize);
                assert_eq!(got, Outcome::End(3));
                assert_eq!(out, b".\r\n");
            }
        }
    }

    #[test]
    fn crlf_dot_crlf_mid_stream_ends_data_and_leaves_pipelined_bytes_d1() {
        let stream = b"Subject: hi\r\n\r\nbody\r\n.\r\nMAIL FROM:<a@b>\r\n";
        let end = stream.len() - b"MAIL FROM:<a@b>\r\n".len();
        for cuts in chunkings(stream) {
            for sanitize in [false, true] {
                let (out, got) = run(stream, &cuts, sanitize);
                assert_eq!(got, Outcome::End(end), "cut {cuts:?}");
                assert_eq!(out, &stream[..end]);
                assert!(out.ends_with(b".\r\n"));
            }
        }
    }

    #[test]
    fn end_returns_consumed_within_the_chunk_d1() {
        let mut s = DataScanner::new();
        let mut out = BytesMut::new();
        assert_eq!(s.scan(b"abc\r\n.", false, &mut out), DataScan::More);
        assert_eq!(
            s.scan(b"\r\nQUIT\r\n", false, &mut out),
            DataScan::End { consumed: 2 }
        );
        assert_eq!(&out[..], b"abc\r\n.\r\n");
    }

    #[test]
    fn trailing_cr_is_held_back_until_the_next_byte_d2() {
        let mut s = DataScanner::new();
        let mut out = BytesMut::new();
        assert_eq!(s.scan(b"ab\r", false, &mut out), DataScan::More);
        assert_eq!(&out[..], b"ab");
        assert_eq!(s.scan(b"", false, &mut out), DataScan::More);
        assert_eq!(&out[..], b"ab");
        assert_eq!(s.scan(b"\ncd", false, &mut out), DataScan::More);
        assert_eq!(&out[..], b"ab\r\ncd");
        assert_eq!(s.scan(b"\r", false, &mut out), DataScan::More);
        assert_eq!(
            s.scan(b"x", false, &mut out),
            DataScan::Bare {
                at: 0,
                byte: BareByte::Cr
            }
        );
        assert_eq!(&out[..], b"ab\r\ncd");
    }

    #[test]
    fn reject_reports_the_first_bare_byte_and_its_offset_d2() {
        for (stream, at, byte) in [
            (&b"ab\ncd"[..], 2, BareByte::Lf),
            (b"ab\rcd", 2, BareByte::Cr),
            (b"ab\0cd", 2, BareByte::Nul),
            (b"\n", 0, BareByte::Lf),
            (b"a\r\0", 1, BareByte::Cr),
        ] {
            let mut s = DataScanner::new();
            let mut out = BytesMut::new();
            assert_eq!(
                s.scan(stream, false, &mut out),
                DataScan::Bare { at, byte },
                "{stream:?}"
            );
            assert_eq!(&out[..], &stream[..at]);
        }
    }

    // ---- byte-exact pass-through ---------------------------------------

    #[test]
    fn dot_stuffed_lines_pass_byte_exact_d1() {
        let stream = b"..foo\r\n...\r\n.. \r\nx.\r\n.\r\n";
        for cuts in chunkings(stream) {
            let (out, got) = run(stream, &cuts, false);
            assert_eq!(got, Outcome::End(stream.len()));
            assert_eq!(out, stream);
        }
    }

    #[test]
    fn clean_content_passes_byte_exact() {
        let stream = b"From: a@b\r\nSubject: \xff\xfe\r\n\r\nline\tone\r\n\r\n\r\n";
        for cuts in chunkings(stream) {
            for sanitize in [false, true] {
                let (out, got) = run(stream, &cuts, sanitize);
                assert_eq!(got, Outcome::More);
                assert_eq!(out, stream);
            }
        }
    }

    // ---- skipper -------------------------------------------------------

    fn skip_all(stream: &[u8], cuts: &[usize], at_line_start: bool) -> Option<usize> {
        let mut s = EndOfDataSkipper::new(at_line_start);
        let mut pos = 0;
        let mut k = 0;
        while pos < stream.len() {
            let n = cuts
                .get(k)
                .copied()
                .unwrap_or(stream.len() - pos)
                .min(stream.len() - pos);
            k += 1;
            if let Some(c) = s.skip(&stream[pos..pos + n]) {
                assert!(s.is_done());
                return Some(pos + c);
            }
            pos += n;
        }
        None
    }

    #[test]
    fn skipper_finds_the_real_end_across_chunks_d2() {
        let stream = b"x\n.\nbad\r.\r\n\0\r\n.\r\r\n.\r\nRSET\r\n";
        let end = stream.len() - b"RSET\r\n".len();
        for cuts in chunkings(stream) {
            assert_eq!(skip_all(stream, &cuts, false), Some(end), "{cuts:?}");
        }
    }

    #[test]
    fn skipper_at_line_start_takes_a_first_dot_line_as_the_end_d1() {
        assert_eq!(skip_all(b".\r\nQUIT\r\n", &[], true), Some(3));
        assert_eq!(skip_all(b".\r\nQUIT\r\n", &[], false), None);
        let mut s = EndOfDataSkipper::new(true);
        assert_eq!(s.skip(b".\r\n"), Some(3));
        assert_eq!(s.skip(b"more"), Some(0));
    }

    #[test]
    fn scanner_hands_over_to_a_skipper_where_it_stands_f2() {
        let stream = b"abc\r\n.\r\nNOOP\r\n";
        for split in 0..stream.len() {
            let mut s = DataScanner::new();
            let mut out = BytesMut::new();
            if let DataScan::End { consumed } = s.scan(&stream[..split], false, &mut out) {
                assert_eq!(consumed, 8);
                continue;
            }
            let mut k = s.skipper();
            assert_eq!(k.skip(&stream[split..]), Some(8 - split), "split {split}");
        }
    }

    // ---- BDAT ----------------------------------------------------------

    #[test]
    fn chunk_counter_takes_exactly_n_octets_d5() {
        let mut c = ChunkCounter::new(10);
        assert_eq!(c.take(4), 4);
        assert_eq!(c.remaining(), 6);
        assert_eq!(c.take(100), 6);
        assert!(c.is_done());
        assert_eq!(c.take(5), 0);
        assert!(ChunkCounter::new(0).is_done());
    }

    // ---- LineFramer ----------------------------------------------------

    fn lines_of(framer: &mut LineFramer, buf: &mut BytesMut) -> Vec<Result<Vec<u8>, LineTooLong>> {
        let mut v = Vec::new();
        while let Some(r) = framer.next_line(buf) {
            v.push(r.map(|b| b.to_vec()));
        }
        v
    }

    #[test]
    fn crlf_and_bare_lf_end_command_lines_r1() {
        let mut f = LineFramer::new(2048);
        let mut buf = BytesMut::from(&b"EHLO a\r\nNOOP\nMAIL FROM:<a@b>\r\n\r\nRSE"[..]);
        assert_eq!(
            lines_of(&mut f, &mut buf),
            vec![
                Ok(b"EHLO a".to_vec()),
                Ok(b"NOOP".to_vec()),
                Ok(b"MAIL FROM:<a@b>".to_vec()),
                Ok(b"".to_vec()),
            ]
        );
        assert_eq!(&buf[..], b"RSE");
        buf.extend_from_slice(b"T\r");
        assert!(f.next_line(&mut buf).is_none());
        buf.extend_from_slice(b"\n");
        assert_eq!(f.next_line(&mut buf), Some(Ok(Bytes::from_static(b"RSET"))));
        assert!(buf.is_empty());
    }

    #[test]
    fn line_of_exactly_max_line_bytes_is_accepted_r1() {
        let mut f = LineFramer::new(8);
        let mut buf = BytesMut::from(&b"NOOP 1\r\nNOOP 12\r\n"[..]);
        assert_eq!(
            f.next_line(&mut buf),
            Some(Ok(Bytes::from_static(b"NOOP 1")))
        );
        assert_eq!(f.next_line(&mut buf), Some(Err(LineTooLong)));
        assert!(!f.is_discarding());
        assert!(buf.is_empty());
        // A partial line one byte short of the bound waits for more.
        let mut buf = BytesMut::from(&b"NOOP 12"[..]);
        assert!(f.next_line(&mut buf).is_none());
        buf.extend_from_slice(b"3");
        assert_eq!(f.next_line(&mut buf), Some(Err(LineTooLong)));
        assert!(f.is_discarding());
    }

    #[test]
    fn too_long_line_is_discarded_across_calls_then_next_line_is_fine_r1() {
        let max = 16;
        let mut f = LineFramer::new(max);
        let mut buf = BytesMut::new();
        let mut errors = 0;
        for _ in 0..100 {
            buf.extend_from_slice(&[b'x'; 10]);
            match f.next_line(&mut buf) {
                Some(Err(LineTooLong)) => errors += 1,
                None => {}
                Some(Ok(l)) => panic!("unexpected line {l:?}"),
            }
            // Memory stays bounded: the framer drains while discarding.
            assert!(buf.len() < max, "buf grew to {}", buf.len());
        }
        assert_eq!(errors, 1);
        assert!(f.is_discarding());
        buf.extend_from_slice(b"xxx\r\nQUIT\r\n");
        assert_eq!(f.next_line(&mut buf), Some(Ok(Bytes::from_static(b"QUIT"))));
        assert!(!f.is_discarding());
        assert!(f.next_line(&mut buf).is_none());
    }

    #[test]
    fn too_long_line_with_its_end_in_the_same_buffer_r1() {
        let mut f = LineFramer::new(8);
        let mut buf = BytesMut::from(&b"0123456789abcdef\r\nQUIT\r\n"[..]);
        assert_eq!(
            lines_of(&mut f, &mut buf),
            vec![Err(LineTooLong), Ok(b"QUIT".to_vec())]
        );
    }

    // ---- properties ----------------------------------------------------

    /// Bytes that hit the interesting cases often.
    fn arb_stream() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(
                prop::sample::select(vec![b'\r', b'\n', b'.', 0u8, b'a']),
                0..64
            ),
            proptest::collection::vec(any::<u8>(), 0..64),
        ]
    }

    fn arb_cuts() -> impl Strategy<Value = Vec<usize>> {
        proptest::collection::vec(0usize..9, 0..40)
    }

    /// Clean, dot-stuffed lines: no CR, LF or NUL inside a line.
    fn arb_clean_lines() -> impl Strategy<Value = Vec<Vec<u8>>> {
        proptest::collection::vec(
            proptest::collection::vec(
                prop_oneof![
                    Just(b'.'),
                    any::<u8>().prop_filter("clean", |b| !matches!(b, b'\r' | b'\n' | 0))
                ],
                0..20,
            ),
            0..12,
        )
    }

    proptest! {
        #[test]
        fn any_chunking_of_clean_content_gives_the_same_output_d1(
            lines in arb_clean_lines(),
            cuts in arb_cuts(),
            trailer in proptest::collection::vec(any::<u8>(), 0..10),
        ) {
            let mut content = Vec::new();
            for l in &lines {
                if l.first() == Some(&b'.') {
                    content.push(b'.');
                }
                content.extend_from_slice(l);
                content.extend_from_slice(b"\r\n");
            }
            content.extend_from_slice(b".\r\n");
            let mut stream = content.clone();
            stream.extend_from_slice(&trailer);
            for sanitize in [false, true] {
                let (out, got) = run(&stream, &cuts, sanitize);
                prop_assert_eq!(got, Outcome::End(content.len()));
                prop_assert_eq!(&out, &content);
            }
        }

        #[test]
        fn sanitize_never_forwards_a_bare_byte_d2(stream in arb_stream(), cuts in arb_cuts()) {
            let (out, got) = run(&stream, &cuts, true);
            prop_assert!(!matches!(got, Outcome::Bare(..)));
            assert_no_bare(&out);
        }

        #[test]
        fn reject_forwards_only_clean_bytes_up_to_the_bare_one_d2(stream in arb_stream(), cuts in arb_cuts()) {
            let (out, got) = run(&stream, &cuts, false);
            assert_no_bare(&out);
            let n = match got {
                Outcome::Bare(at, _) | Outcome::End(at) => at,
                Outcome::More => stream.len() - usize::from(stream.last() == Some(&b'\r')),
            };
            prop_assert_eq!(&out[..], &stream[..n]);
        }

        #[test]
        fn scanner_agrees_with_whole_buffer_reference_d1_d2(stream in arb_stream(), cuts in arb_cuts()) {
            for sanitize in [false, true] {
                let want = ref_run(&stream, sanitize);
                prop_assert_eq!(run(&stream, &cuts, sanitize), want.clone());
                prop_assert_eq!(run_whole(&stream, sanitize), want);
            }
        }

        #[test]
        fn skipper_agrees_with_whole_buffer_reference_d1(stream in arb_stream(), cuts in arb_cuts()) {
            prop_assert_eq!(skip_all(&stream, &cuts, true), ref_end(&stream));
            let mid_line = stream.windows(5).position(|w| w == b"\r\n.\r\n").map(|i| i + 5);
            prop_assert_eq!(skip_all(&stream, &cuts, false), mid_line);
        }

        #[test]
        fn any_chunking_gives_the_same_command_lines_r1(
            stream in proptest::collection::vec(
                prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'a')], 0..120),
            cuts in proptest::collection::vec(1usize..9, 0..60),
            max in 2usize..12,
        ) {
            let mut whole = LineFramer::new(max);
            let mut buf = BytesMut::from(&stream[..]);
            let want = lines_of(&mut whole, &mut buf);
            let mut f = LineFramer::new(max);
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            let mut rest = &stream[..];
            let mut k = 0;
            while !rest.is_empty() {
                let n = cuts.get(k).copied().unwrap_or(rest.len()).min(rest.len());
                k += 1;
                buf.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
                got.extend(lines_of(&mut f, &mut buf));
                prop_assert!(buf.len() < max);
            }
            prop_assert_eq!(got, want);
        }
    }
}
