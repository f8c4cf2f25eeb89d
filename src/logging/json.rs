//! JSON log records, written straight into the output line: one object per
//! record, `{"timestamp":…,"level":…,"message":…, fields…, "target":…}`,
//! the shape tracing-subscriber's flattened JSON gives (what operators and
//! the tests parse), without a general-purpose serializer: a session's
//! record costs a few hundred nanoseconds instead of microseconds.
//!
//! Values are JSON-escaped (`"`, `\` and control characters); what comes
//! from the network is already escaped for logs (L4) before it gets here.
//! Spans are not written (replyfix logs none).

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The JSON record format (see the module documentation).
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonRecords;

thread_local! {
    /// Per thread: the message, the other fields, a scratch for values
    /// formatted with `Display`/`Debug`, and the last second's timestamp.
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

#[derive(Default)]
struct Scratch {
    message: String,
    fields: String,
    value: String,
    /// (unix second, "YYYY-MM-DDTHH:MM:SS") of the last record.
    second: (u64, String),
}

impl<S, N> FormatEvent<S, N> for JsonRecords
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        SCRATCH.with(|cell| {
            let mut guard = cell.borrow_mut();
            let scratch = &mut *guard;
            scratch.message.clear();
            scratch.fields.clear();
            event.record(&mut Fields {
                message: &mut scratch.message,
                fields: &mut scratch.fields,
                value: &mut scratch.value,
            });
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            let second = now.as_secs();
            if scratch.second.0 != second || scratch.second.1.is_empty() {
                scratch.second = (second, civil_time(second));
            }
            let meta = event.metadata();
            write!(
                writer,
                "{{\"timestamp\":\"{}.{:06}Z\",\"level\":\"{}\"",
                scratch.second.1,
                now.subsec_micros(),
                meta.level()
            )?;
            if !scratch.message.is_empty() {
                writer.write_str(",\"message\":")?;
                writer.write_str(&scratch.message)?;
            }
            writer.write_str(&scratch.fields)?;
            writer.write_str(",\"target\":")?;
            write_json_str(&mut writer, meta.target())?;
            writer.write_str("}\n")
        })
    }
}

/// Writes each field as `,"name":value` (the message apart, as its value).
struct Fields<'a> {
    message: &'a mut String,
    fields: &'a mut String,
    value: &'a mut String,
}

impl Fields<'_> {
    fn out(&mut self, field: &Field) -> &mut String {
        if field.name() == "message" {
            self.message.clear();
            self.message
        } else {
            self.fields.push_str(",\"");
            self.fields.push_str(field.name());
            self.fields.push_str("\":");
            self.fields
        }
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        let _ = write_json_str(self.out(field), value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        let _ = write!(self.out(field), "{value}");
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        let _ = write!(self.out(field), "{value}");
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.out(field)
            .push_str(if value { "true" } else { "false" });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        let out = self.out(field);
        if value.is_finite() {
            let _ = write!(out, "{value}");
        } else {
            out.push_str("null");
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `%` fields arrive here as Display-through-Debug: format once into
        // the scratch, then escape into the line.
        let mut text = std::mem::take(self.value);
        text.clear();
        let _ = write!(text, "{value:?}");
        let _ = write_json_str(self.out(field), &text);
        *self.value = text;
    }
}

/// `s` as a JSON string, quotes included.
fn write_json_str(out: &mut impl fmt::Write, s: &str) -> fmt::Result {
    out.write_char('"')?;
    let mut plain = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape: Option<&str> = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0..=0x1f | 0x7f => None,
            _ => continue,
        };
        out.write_str(&s[plain..i])?;
        match escape {
            Some(e) => out.write_str(e)?,
            None => write!(out, "\\u{b:04x}")?,
        }
        plain = i + 1;
    }
    out.write_str(&s[plain..])?;
    out.write_char('"')
}

/// `YYYY-MM-DDTHH:MM:SS` (UTC) of a Unix second.
fn civil_time(secs: u64) -> String {
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    let (hour, minute, second) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}")
}

/// The proleptic Gregorian date `(year, month, day)` of a day count since
/// 1970-01-01 (days-from-civil inverted, in eras of 400 years). Log
/// timestamps and the console's times both use it.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::Buf;

    #[test]
    fn civil_time_matches_known_dates() {
        assert_eq!(civil_time(0), "1970-01-01T00:00:00");
        assert_eq!(civil_time(951_782_400), "2000-02-29T00:00:00");
        assert_eq!(civil_time(1_798_761_599), "2026-12-31T23:59:59");
        assert_eq!(civil_time(4_102_444_800), "2100-01-01T00:00:00");
    }

    #[test]
    fn strings_are_escaped_for_json() {
        let mut s = String::new();
        write_json_str(&mut s, "a\"b\\c\x01\n").unwrap();
        assert_eq!(s, r#""a\"b\\c\u0001\n""#);
    }

    #[test]
    fn a_record_is_one_json_object_with_every_field() {
        let buf = Buf::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || out.clone())
            .event_format(JsonRecords)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let original = "530 \"quoted\" \\x0D\\x0A";
            tracing::info!(
                target: "replyfix::rewrite",
                session = "s-1",
                rules = 44u64,
                delta = -3i64,
                shadow = false,
                original = %original,
                kind = ?Some(1),
                "reply rewritten"
            );
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let v: serde_json::Value = serde_json::from_str(text.trim()).expect(&text);
        assert_eq!(v["message"], "reply rewritten");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["target"], "replyfix::rewrite");
        assert_eq!(v["session"], "s-1");
        assert_eq!(v["rules"], 44);
        assert_eq!(v["delta"], -3);
        assert_eq!(v["shadow"], false);
        assert_eq!(v["original"], "530 \"quoted\" \\x0D\\x0A");
        assert_eq!(v["kind"], "Some(1)");
        let ts = v["timestamp"].as_str().unwrap();
        assert_eq!(ts.len(), "2026-12-06T07:02:31.993925Z".len(), "{ts}");
        assert!(text.ends_with("}\n") && text.matches('\n').count() == 1);
    }
}
