//! How figures read on the pages.

use time::macros::format_description;
use time::OffsetDateTime;

/// A latency in microseconds, in the unit that reads best.
pub(crate) fn duration(us: f64) -> String {
    if us >= 1_000_000.0 {
        format!("{:.2} s", us / 1_000_000.0)
    } else if us >= 1_000.0 {
        format!("{:.1} ms", us / 1_000.0)
    } else {
        format!("{us:.0} µs")
    }
}

/// A gRPC status code and its name, as tonic names gRPC's codes: `14 Unavailable`.
pub(crate) fn grpc_code(code: u8) -> String {
    format!("{code} {:?}", tonic::Code::from_i32(i32::from(code)))
}

pub(crate) fn percent(ratio: f64) -> String {
    format!("{:.2}%", ratio * 100.0)
}

pub(crate) fn count(n: f64) -> String {
    if n >= 1_000_000.0 {
        format!("{:.1}M", n / 1_000_000.0)
    } else if n >= 10_000.0 {
        format!("{:.1}k", n / 1_000.0)
    } else if n.fract() == 0.0 {
        format!("{n:.0}")
    } else {
        format!("{n:.1}")
    }
}

pub(crate) fn bytes(n: u64) -> String {
    match n {
        0..1_024 => format!("{n} B"),
        1_024..1_048_576 => format!("{:.1} KiB", n as f64 / 1_024.0),
        _ => format!("{:.1} MiB", n as f64 / 1_048_576.0),
    }
}

fn at(us: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000).ok()
}

/// `HH:MM` (UTC).
pub(crate) fn clock_minute(us: i64) -> String {
    at(us)
        .and_then(|t| t.format(format_description!("[hour]:[minute]")).ok())
        .unwrap_or_default()
}

/// `HH:MM:SS` (UTC).
pub(crate) fn clock(us: i64) -> String {
    at(us)
        .and_then(|t| t.format(format_description!("[hour]:[minute]:[second]")).ok())
        .unwrap_or_default()
}

/// `MM-DD HH:MM:SS` (UTC).
pub(crate) fn day_clock(us: i64) -> String {
    at(us)
        .and_then(|t| {
            t.format(format_description!("[month]-[day] [hour]:[minute]:[second]"))
                .ok()
        })
        .unwrap_or_default()
}

/// `YYYY-MM-DD HH:MM:SS.mmm UTC`.
pub(crate) fn timestamp(us: i64) -> String {
    at(us)
        .and_then(|t| {
            t.format(format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:3] UTC"
            ))
            .ok()
        })
        .unwrap_or_default()
}
