//! The store's side of the event writer: appends each batch into a transaction committed about
//! once a second, keeps rollups current, enforces retention, exports closed hours; and when the
//! database fails, drops it, counts what is lost and reopens it with back-off until it works
//! again.

use super::database::ArrowAppender;
use super::serving::ServingPeriod;
use super::uncommitted::{Uncommitted, COMMIT_ROWS};
use super::{append, fleet, in_transaction, lock, now_us, open_database, retention, rollup, Store, CATALOG};
use crate::analysis::{anomaly, minute_of, MINUTE_US};
use crate::{EventSink, RequestEvent};
use duckdb::Connection;
use std::io;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

/// How often closed minutes are rolled up.
const ROLLUP_EVERY: Duration = Duration::from_secs(5);
/// How often retention and the fleet export run.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(60);
const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(30);
/// How far back each detection pass looks: long enough that a run of anomalous minutes still
/// going on is found from its start again, and extended rather than recorded twice.
const DETECTION_LOOKBACK_MINUTES: i64 = 60;

pub struct StoreSink {
    store: Store,
    /// The writer's connections; `None` while the database is down.
    pub(super) conn: Option<Writer>,
    /// The transaction batches are being appended into, if one is open.
    uncommitted: Option<Uncommitted>,
    /// The key the next request is stored under; `None` until read from the database (again
    /// after a failure, whose rolled-back keys are then used again).
    next_key: Option<u64>,
    /// The minutes new events touched, for the rollups.
    pending: rollup::Pending,
    /// Minutes before this one (microseconds since the epoch) have been judged for anomalies.
    judged_until_us: i64,
    /// When this run was serving, for the anomaly detector.
    serving: ServingPeriod,
    last_rollup: Instant,
    last_housekeeping: Instant,
    retry_at: Instant,
    retry_delay: Duration,
}

/// The writer's two connections to the database: one appends events in the open transaction,
/// the other reads them back (keys, rollups) and keeps the store (retention, export) once they
/// are committed.
pub(super) struct Writer {
    pub(super) conn: Connection,
    appender: ArrowAppender,
}

impl StoreSink {
    pub(crate) fn new(store: Store, conn: Connection, appender: ArrowAppender) -> Self {
        let now = Instant::now();
        StoreSink {
            store,
            conn: Some(Writer { conn, appender }),
            uncommitted: None,
            next_key: None,
            pending: rollup::Pending::default(),
            judged_until_us: 0,
            serving: ServingPeriod::begin(now_us()),
            last_rollup: now,
            last_housekeeping: now,
            retry_at: now,
            retry_delay: FIRST_RETRY,
        }
    }

    /// Commits the events appended so far. A failed commit loses them all: they are counted,
    /// and the database is reopened.
    pub fn commit(&mut self) {
        let (Some(writer), Some(open)) = (&mut self.conn, self.uncommitted.take()) else {
            return;
        };
        match writer.appender.commit() {
            Ok(()) => {
                let counters = &self.store.shared.counters;
                let events = open.events as u64;
                counters.events_written.fetch_add(events, Ordering::Relaxed);
                self.pending.note(open.earliest_us, open.latest_us);
                self.bound_size();
            }
            Err(error) => {
                self.count_lost(open.events);
                self.fail(&error);
            }
        }
    }

    /// Holds the store to its size bound, now that a commit added to it.
    fn bound_size(&mut self) {
        let Some(Writer { conn, .. }) = &self.conn else {
            return;
        };
        let counters = &self.store.shared.counters;
        match retention::bound_size(conn, &self.store.shared.settings.kept()) {
            Ok(expired) => {
                counters.rows_expired.fetch_add(expired, Ordering::Relaxed);
            }
            Err(error) => self.fail(&error),
        }
    }

    /// Counts events the store took and could not keep.
    fn count_lost(&self, events: usize) {
        let counters = &self.store.shared.counters;
        counters.events_lost.fetch_add(events as u64, Ordering::Relaxed);
    }

    /// Records a failure, closes the database (queries are refused until it is back; the open
    /// transaction is rolled back, its events counted as lost) and schedules a reopen.
    fn fail(&mut self, error: &dyn std::fmt::Display) {
        if let Some(open) = self.uncommitted.take() {
            self.count_lost(open.events);
        }
        self.next_key = None;
        let shared = &self.store.shared;
        shared.counters.write_failures.fetch_add(1, Ordering::Relaxed);
        *lock(&shared.last_error) = Some((SystemTime::now(), error.to_string()));
        if self.conn.take().is_some() {
            tracing::error!(%error, "the analytics store failed; the gateway goes on without it and reopens it");
        }
        lock(&shared.database).take();
        self.retry_at = Instant::now() + self.retry_delay;
        self.retry_delay = (self.retry_delay * 2).min(MAX_RETRY);
    }

    fn try_reopen(&mut self) {
        let shared = &self.store.shared;
        // The old database is gone only when the last query on it is; opening the file again
        // before that would give one process two databases on one file.
        if Instant::now() < self.retry_at || shared.queries_running.load(Ordering::Acquire) > 0 {
            return;
        }
        let reopened = open_database(&shared.settings)
            .and_then(|(database, conn)| Ok((database.arrow_appender(CATALOG)?, database, conn)));
        match reopened {
            Ok((appender, database, conn)) => {
                *lock(&shared.database) = Some(database);
                self.conn = Some(Writer { conn, appender });
                self.retry_delay = FIRST_RETRY;
                shared.counters.reopens.fetch_add(1, Ordering::Relaxed);
                tracing::info!("the analytics store is back");
            }
            Err(error) => self.fail(&error),
        }
    }

    /// Appends `events` (no more than the open transaction has room for) and commits when the
    /// transaction is due.
    fn write_part(&mut self, events: &[RequestEvent]) -> io::Result<()> {
        let times = events.iter().map(|e| e.timestamp_us as i64);
        let (Some(earliest), Some(latest)) = (times.clone().min(), times.max()) else {
            return Ok(());
        };
        let Some(writer) = &mut self.conn else {
            self.count_lost(events.len());
            return Err(io::Error::other("the analytics store is down"));
        };
        // Read on the other connection, outside the transaction: only keys of committed
        // events, and none is open while the next key is unknown.
        let first_key = self
            .next_key
            .map_or_else(|| append::last_key(&writer.conn).map(|key| key + 1), Ok);
        let uncommitted = &mut self.uncommitted;
        let appended = first_key.and_then(|first_key| {
            if uncommitted.is_none() {
                writer.appender.execute("BEGIN TRANSACTION")?;
                *uncommitted = Some(Uncommitted::new());
            }
            append::append(&mut writer.appender, events, first_key)?;
            Ok(first_key)
        });
        match appended {
            Ok(first_key) => {
                self.next_key = Some(first_key + events.len() as u64);
                self.serving.note_event(earliest);
                if let Some(open) = &mut self.uncommitted {
                    open.note(events.len(), earliest, latest);
                    if open.due() {
                        self.commit();
                    }
                }
                Ok(())
            }
            Err(error) => {
                self.count_lost(events.len());
                self.fail(&error);
                Err(io::Error::other(error))
            }
        }
    }

    fn roll_up(&mut self, include_open: bool) {
        let Some(Writer { conn, .. }) = &self.conn else {
            return;
        };
        self.last_rollup = Instant::now();
        let now = now_us();
        let closed_until = minute_of(now - rollup::GRACE_US);
        // Before the detector reads it: the minutes just closed were served whole.
        let detected = self
            .serving
            .record(conn, now)
            .and_then(|()| self.pending.refresh(conn, now, include_open))
            .and_then(|rolled_up| {
                if rolled_up || closed_until > self.judged_until_us {
                    self.judged_until_us = closed_until;
                    detect_anomalies(conn, &self.store, closed_until, now)
                } else {
                    Ok(())
                }
            });
        if let Err(error) = detected {
            self.fail(&error);
        }
    }

    /// Retention, then the fleet's export. A failed export (a fleet directory that cannot be
    /// written: a full or missing mount) is the export's failure, not the database's: it is
    /// counted and logged, and the hour tried again at the next pass.
    pub(super) fn housekeeping(&mut self) {
        let Some(Writer { conn, .. }) = &self.conn else {
            return;
        };
        self.last_housekeeping = Instant::now();
        let shared = &self.store.shared;
        let counters = &shared.counters;
        match retention::enforce(conn, &shared.settings.kept()) {
            Ok(expired) => {
                counters.rows_expired.fetch_add(expired, Ordering::Relaxed);
            }
            Err(error) => return self.fail(&error),
        }
        let Some(fleet) = &shared.settings.fleet else {
            return;
        };
        match fleet::export_closed_hours(conn, fleet) {
            Ok(exported) => {
                counters
                    .partitions_exported
                    .fetch_add(exported.len() as u64, Ordering::Relaxed);
            }
            Err(error) => {
                counters.export_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, dir = %fleet.dir.display(), "cannot export the closed hours to the fleet directory; trying again in a minute");
            }
        }
    }
}

impl EventSink for StoreSink {
    /// Appends the batch in parts that end where a transaction is full, so that each commit
    /// under load holds exactly one row group.
    fn write_batch(&mut self, events: &[RequestEvent]) -> io::Result<()> {
        let mut rest = events;
        while !rest.is_empty() {
            let room = self.uncommitted.as_ref().map_or(COMMIT_ROWS, Uncommitted::room);
            // At least one event per part, so the loop always advances.
            let (part, after) = rest.split_at(room.clamp(1, rest.len()));
            if let Err(error) = self.write_part(part) {
                self.count_lost(after.len());
                return Err(error);
            }
            rest = after;
        }
        Ok(())
    }

    fn maintain(&mut self) {
        if self.conn.is_none() {
            self.try_reopen();
            return;
        }
        let roll_up = self.last_rollup.elapsed() >= ROLLUP_EVERY;
        let housekeeping = self.last_housekeeping.elapsed() >= HOUSEKEEPING_EVERY;
        // Rollups and housekeeping run their own transactions, on committed events.
        if roll_up || housekeeping || self.uncommitted.as_ref().is_some_and(Uncommitted::due) {
            self.commit();
        }
        if roll_up {
            self.roll_up(false);
        }
        if housekeeping {
            self.housekeeping();
        }
    }

    fn close(&mut self) {
        self.commit();
        self.roll_up(true);
    }
}

/// Judges the last hour's closed minutes, records what is anomalous, and publishes the
/// anomalies still going on in the latest closed minute.
fn detect_anomalies(conn: &Connection, store: &Store, closed_until: i64, now: i64) -> duckdb::Result<()> {
    let since = closed_until - DETECTION_LOOKBACK_MINUTES * MINUTE_US;
    let found = anomaly::find(conn, since, closed_until, &anomaly::DetectorSettings::default())?;
    let latest = closed_until - MINUTE_US;
    let active = found
        .iter()
        .filter(|a| a.last_minute_us == latest)
        .cloned()
        .collect();
    in_transaction(conn, || anomaly::replace(conn, since, found, now))?;
    store.shared.anomalies.publish(active);
    Ok(())
}
