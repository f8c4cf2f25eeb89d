//! DATA end-of-data framing (D1, D2, D6), BDAT chunk counting (D5) and
//! command-line framing (R1), each differential against a reference written
//! by direct definition in `replyfix_fuzz` (whole stream, no state).
//!
//! Input: a policy byte, then a content stream built from raw bytes and the
//! D1 variants, then split points: the incremental code must come to the
//! reference's result whatever the chunking.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use replyfix::smtp::framing::{ChunkCounter, DataScan, DataScanner, LineFramer};
use replyfix_fuzz::{
    Input, NOT_ENDS, ReferenceScan, reference_drain_end, reference_scan, split_points,
};

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let mode = input.byte();
    let sanitize = mode & 1 == 1;
    // Build the stream from pieces: raw bytes, D1 variants, true ends,
    // dot-stuffed lines.
    let mut stream = Vec::new();
    for _ in 0..input.below(12) {
        match input.byte() % 6 {
            0 => stream.extend_from_slice(NOT_ENDS[input.below(NOT_ENDS.len())]),
            1 => stream.extend_from_slice(b"\r\n.\r\n"),
            2 => stream.extend_from_slice(b"\r\n..x\r\n"),
            3 => stream.push([b'\r', b'\n', 0, b'.'][input.below(4)]),
            _ => stream.extend_from_slice(input.bytes(40)),
        }
    }
    let chunks = split_points(&mut input, stream.len());
    // A drain switch point (F2: upstream lost mid-content) when mode says so.
    let switch_at = if mode & 2 == 2 {
        Some(chunks.len() / 2)
    } else {
        None
    };

    check_scanner(&stream, &chunks, sanitize, switch_at);
    check_chunk_counter(&stream, &chunks, input.below(64) as u64);
    check_line_framer(&stream, &chunks, 2 + input.below(40));
});

/// DataScanner (and, after a stop, the skipper) against the reference.
fn check_scanner(
    stream: &[u8],
    chunks: &[(usize, usize)],
    sanitize: bool,
    switch_at: Option<usize>,
) {
    let mut scanner = DataScanner::new();
    let mut out = BytesMut::new();
    let want = reference_scan(stream, sanitize);
    for (n, &(a, b)) in chunks.iter().enumerate() {
        if switch_at == Some(n) {
            // F2: the scanner's skipper, continued from here, must find the
            // stream's real end of data (or none).
            let mut skipper = scanner.skipper();
            let want_end = match &want {
                ReferenceScan::End { consumed, .. } => Some(*consumed),
                ReferenceScan::More { .. } => None,
                // A bare byte before this point would already have stopped
                // the scanner; later ones do not matter to a drain.
                ReferenceScan::Bare { .. } => replyfix_fuzz::reference_end_of_data(stream),
            };
            let got = skip_from(&mut skipper, stream, chunks, n, a);
            assert_eq!(got, want_end, "skipper after switch at chunk {n}");
            return;
        }
        match scanner.scan(&stream[a..b], sanitize, &mut out) {
            DataScan::More => {}
            DataScan::End { consumed } => {
                assert_eq!(
                    want,
                    ReferenceScan::End {
                        consumed: a + consumed,
                        out: out.to_vec()
                    },
                    "end of data"
                );
                return;
            }
            DataScan::Bare { at, .. } => {
                assert!(!sanitize, "sanitize never stops at a bare byte");
                let ReferenceScan::Bare {
                    at: want_at,
                    out: want_out,
                } = &want
                else {
                    panic!("scanner stopped at a bare byte, reference says {want:?}");
                };
                // A CR held from the previous chunk is reported at offset 0
                // of the chunk that showed it bare.
                let abs = a + at;
                assert!(
                    abs == *want_at || (at == 0 && a == *want_at + 1),
                    "bare at {abs}, want {want_at}"
                );
                assert_eq!(&out[..], &want_out[..], "clean prefix");
                // D2 reject: the drain from the bare byte finds the real end.
                let mut skipper = replyfix::smtp::framing::EndOfDataSkipper::new(false);
                let got = skip_from(&mut skipper, stream, chunks, n, abs);
                assert_eq!(
                    got,
                    reference_drain_end(stream, *want_at),
                    "drain end after bare byte"
                );
                return;
            }
        }
    }
    match want {
        ReferenceScan::More { out: want_out } => {
            assert_eq!(&out[..], &want_out[..], "content so far")
        }
        other => panic!("scanner wants more, reference says {other:?}"),
    }
}

/// Feeds `stream[from..]` (chunk `n` onwards) to a skipper; the absolute end.
fn skip_from(
    skipper: &mut replyfix::smtp::framing::EndOfDataSkipper,
    stream: &[u8],
    chunks: &[(usize, usize)],
    n: usize,
    from: usize,
) -> Option<usize> {
    let mut pos = from;
    for &(_, b) in &chunks[n..] {
        if let Some(used) = skipper.skip(&stream[pos..b]) {
            return Some(pos + used);
        }
        pos = b;
    }
    None
}

/// D5: the counter takes exactly `size` octets, whatever the chunking.
fn check_chunk_counter(stream: &[u8], chunks: &[(usize, usize)], size: u64) {
    let mut counter = ChunkCounter::new(size);
    let mut taken = 0u64;
    for &(a, b) in chunks {
        let n = counter.take(b - a);
        assert!(n <= b - a);
        taken += n as u64;
    }
    assert_eq!(taken, size.min(stream.len() as u64));
    assert_eq!(counter.is_done(), size <= stream.len() as u64);
}

/// R1: command lines, by definition: split at LF, strip one CR before it;
/// a line longer than `max` (ending included) is one error and is dropped
/// whole.
fn check_line_framer(stream: &[u8], chunks: &[(usize, usize)], max: usize) {
    let mut framer = LineFramer::new(max);
    let mut buf = BytesMut::new();
    let mut got: Vec<Result<Vec<u8>, ()>> = Vec::new();
    for &(a, b) in chunks {
        buf.extend_from_slice(&stream[a..b]);
        while let Some(line) = framer.next_line(&mut buf) {
            got.push(line.map(|l| l.to_vec()).map_err(|_| ()));
        }
        assert!(
            buf.len() < max.max(2),
            "framer holds at most one partial line"
        );
    }
    let mut want = Vec::new();
    let mut rest = stream;
    while let Some(i) = rest.iter().position(|&b| b == b'\n') {
        let line = &rest[..=i];
        rest = &rest[i + 1..];
        if line.len() > max.max(2) {
            want.push(Err(()));
        } else {
            let body = &line[..i];
            want.push(Ok(body.strip_suffix(b"\r").unwrap_or(body).to_vec()));
        }
    }
    if rest.len() >= max.max(2) {
        // An unfinished over-long line is reported as soon as it is too long.
        want.push(Err(()));
    }
    assert_eq!(got, want, "command lines");
}
