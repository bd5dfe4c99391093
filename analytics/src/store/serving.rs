//! This run's serving period, kept in `serving_periods`: from the gateway's start, or the earliest
//! event the run wrote when that is older (the demo's made-up history), to the last time the
//! writer was seen, which every rollup pass and the close bring forward. The anomaly detector
//! judges a minute's request rate only when a period covers the whole minute.

use crate::analysis::at;
use duckdb::Connection;

pub(crate) struct ServingPeriod {
    opened_us: i64,
    started_us: i64,
}

impl ServingPeriod {
    pub(crate) fn begin(now_us: i64) -> Self {
        ServingPeriod {
            opened_us: now_us,
            started_us: now_us,
        }
    }

    /// Notes an event of this run: the period reaches back to it.
    pub(crate) fn note_event(&mut self, timestamp_us: i64) {
        self.started_us = self.started_us.min(timestamp_us);
    }

    /// Records the period as lasting until `now_us`.
    pub(crate) fn record(&self, conn: &Connection, now_us: i64) -> duckdb::Result<()> {
        conn.execute(
            "INSERT OR REPLACE INTO serving_periods (opened, started, last_seen) VALUES (?, ?, ?)",
            [at(self.opened_us), at(self.started_us), at(now_us)],
        )?;
        Ok(())
    }
}
