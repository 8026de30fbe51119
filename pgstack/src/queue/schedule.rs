//! Recurring jobs: a queue's `schedules = [{ name, cron, kind, .. }]`, enqueued by its workers.
//!
//! Each schedule has one row in `pgstack_queue_schedules` holding `last_tick`: every tick up to
//! it is decided (enqueued, or skipped as missed). A pass locks the rows (`FOR UPDATE SKIP
//! LOCKED`), works out the ticks after `last_tick` up to the database's `now()`, enqueues
//! their jobs and moves `last_tick`, all in one transaction. However many workers run passes,
//! a tick is decided by the one pass that holds its row, and its job commits together with the
//! new `last_tick` or not at all: each tick is enqueued exactly once. A worker that skips a
//! locked row sleeps until the next tick, like the others.
//!
//! A tick is on time while it is no older than its schedule's `grace` (default 1 minute);
//! older ticks were missed (no worker ran, or none could reach the database) and follow the
//! schedule's [`CatchUp`]: `Skip` drops them, `Last` enqueues the latest of them once. Only
//! the database's clock is read, so workers whose clocks disagree still agree on the ticks.
//!
//! A tick's job has `created_at` and `visible_at` at its tick: a handler reads which tick it
//! serves from [`Delivery::created_at`](super::Delivery), also when it runs late.

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use sea_orm::sea_query::ArrayType;
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};

use super::def::{CatchUp, ScheduleDef};
use super::{Payload, Queue};
use crate::error::{DbContext, Error, Result};
use crate::limits::MAX_BATCH;
use crate::sql::stmt;

/// The longest a scheduler sleeps between passes, whatever its next tick: a schedule whose
/// row another worker held is looked at again within this long.
const MAX_SLEEP: Duration = Duration::from_secs(60);
/// The shortest, so that a clock read just before a tick does not spin.
const MIN_SLEEP: Duration = Duration::from_millis(10);

/// One schedule, parsed.
struct Entry {
    def: &'static ScheduleDef,
    cron: Cron,
    tz: Tz,
    /// The payload as bound to every tick's insert, encoded once.
    payload: sea_orm::Value,
}

/// A queue's schedules, parsed once (when a worker starts).
pub(crate) struct Schedules {
    queue: &'static Queue,
    entries: Vec<Entry>,
}

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SchedulePass {
    /// Jobs enqueued, one per tick, as `(schedule, tick)`.
    pub enqueued: Vec<(&'static str, DateTime<Utc>)>,
    /// Schedules with missed ticks that were dropped (`catch_up = "skip"`, or all but the
    /// latest with `"last"`), as `(schedule, ticks after this one were missed)`.
    pub skipped: Vec<(&'static str, DateTime<Utc>)>,
    /// Schedules another process's pass held: decided there, not here.
    pub held_elsewhere: usize,
    /// How long until the next tick of any schedule (by the database's clock), at most a
    /// minute.
    pub next_in: Duration,
}

/// The ticks of one schedule after `last` up to `now`.
#[derive(Debug, PartialEq, Eq)]
struct Decision {
    /// On time, in order, at most [`MAX_BATCH`] (the rest wait for the next pass).
    on_time: Vec<DateTime<Utc>>,
    /// The latest missed tick, enqueued with `CatchUp::Last`.
    catch_up: Option<DateTime<Utc>>,
    /// Whether ticks were missed and dropped.
    skipped: bool,
    /// Where `last_tick` moves to.
    decided_to: DateTime<Utc>,
}

impl Schedules {
    /// Parses `queue`'s schedules; an expression or time zone the generator accepted always
    /// parses, so an error here means hand-edited generated code.
    pub(crate) fn new(queue: &'static Queue) -> Result<Schedules> {
        let invalid = |def: &ScheduleDef, what: String| Error::InvalidArgument {
            facility: queue.def().table.to_string(),
            message: format!(
                "schedule `{}`: {what}; fix it in pgstack.toml and run `pgstack-gen generate`",
                def.name
            ),
        };
        let mut entries = Vec::new();
        for def in queue.def().schedules {
            let cron = cron_parser()
                .parse(def.cron)
                .map_err(|e| invalid(def, format!("cron `{}` does not parse: {e}", def.cron)))?;
            let tz: Tz = def
                .timezone
                .parse()
                .map_err(|_| invalid(def, format!("unknown time zone `{}`", def.timezone)))?;
            let payload = match queue.def().payload {
                crate::ValueKind::Bytea => Payload::Bytes(def.payload.as_bytes().to_vec()),
                crate::ValueKind::Jsonb => Payload::Json(
                    serde_json::from_str(def.payload)
                        .map_err(|e| invalid(def, format!("the payload is not JSON: {e}")))?,
                ),
            };
            entries.push(Entry {
                def,
                cron,
                tz,
                payload: queue.encode(&payload)?,
            });
        }
        Ok(Schedules { queue, entries })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn names(&self) -> Vec<String> {
        self.entries
            .iter()
            .map(|e| e.def.name.to_string())
            .collect()
    }

    /// Creates the schedules' rows (from now) and restarts those whose definition changed.
    pub(crate) async fn register(&self, db: &DatabaseConnection) -> Result<()> {
        let sql = &self.queue.sql()?.schedule;
        let f = self.queue.name();
        let (crons, zones): (Vec<String>, Vec<String>) = self
            .entries
            .iter()
            .map(|e| (e.def.cron.to_string(), e.def.timezone.to_string()))
            .unzip();
        db.execute_raw(stmt(
            &sql.register,
            [self.names().into(), crons.into(), zones.into()],
        ))
        .await
        .in_facility(f)?;
        Ok(())
    }

    /// Decides every tick due by the database's clock, in one transaction.
    pub(crate) async fn pass(&self, db: &DatabaseConnection) -> Result<SchedulePass> {
        let sql = &self.queue.sql()?.schedule;
        let f = self.queue.name();
        let tx = db.begin().await.in_facility(f)?;
        let rows = tx
            .query_all_raw(stmt(&sql.lock, [self.names().into()]))
            .await
            .in_facility(f)?;
        let mut pass = SchedulePass {
            held_elsewhere: self.entries.len().saturating_sub(rows.len()),
            ..SchedulePass::default()
        };
        let mut now = None;
        for row in &rows {
            let name: String = row.try_get_by_index(0).in_facility(f)?;
            let last: DateTime<Utc> = row.try_get_by_index(1).in_facility(f)?;
            let db_now: DateTime<Utc> = row.try_get_by_index(2).in_facility(f)?;
            now = Some(db_now);
            let Some(entry) = self.entries.iter().find(|e| e.def.name == name) else {
                continue;
            };
            let decision = decide(entry, last, db_now);
            let mut ticks = decision.on_time.clone();
            if let Some(tick) = decision.catch_up {
                ticks.insert(0, tick);
            }
            if !ticks.is_empty() {
                let def = self.queue.def();
                tx.execute_raw(stmt(
                    &sql.enqueue,
                    [
                        entry.def.kind.into(),
                        entry.payload.clone(),
                        entry.def.priority.into(),
                        (def.max_attempts as i32).into(),
                        super::array(ArrayType::ChronoDateTimeUtc, ticks.clone()),
                    ],
                ))
                .await
                .in_facility(f)?;
            }
            // Nothing due and nothing dropped: `last_tick` may stay (no tick lies between it
            // and now), and the row is not rewritten on every pass.
            if !ticks.is_empty() || decision.skipped {
                tx.execute_raw(stmt(
                    &sql.advance,
                    [name.clone().into(), decision.decided_to.into()],
                ))
                .await
                .in_facility(f)?;
            }
            if decision.skipped {
                pass.skipped.push((entry.def.name, last));
            }
            pass.enqueued
                .extend(ticks.iter().map(|tick| (entry.def.name, *tick)));
        }
        tx.commit().await.in_facility(f)?;
        let now = match now {
            Some(now) => now,
            None => self.database_now(db).await?,
        };
        pass.next_in = self.next_in(now);
        Ok(pass)
    }

    async fn database_now(&self, db: &DatabaseConnection) -> Result<DateTime<Utc>> {
        let f = self.queue.name();
        let row = db
            .query_one_raw(stmt("SELECT now()", []))
            .await
            .in_facility(f)?
            .ok_or_else(|| {
                self.queue
                    .invalid("SELECT now() returned no row".to_string())
            })?;
        row.try_get_by_index(0).in_facility(f)
    }

    /// How long from `now` until the next tick of any schedule.
    fn next_in(&self, now: DateTime<Utc>) -> Duration {
        self.entries
            .iter()
            .filter_map(|e| next_after(e, now))
            .map(|next| (next - now).to_std().unwrap_or(MIN_SLEEP))
            .min()
            .unwrap_or(MAX_SLEEP)
            .clamp(MIN_SLEEP, MAX_SLEEP)
    }
}

/// The cron dialect: five fields, six with seconds first, or a nickname (`@daily`). The
/// generator parses with the same settings (`pgstack_spec`'s `cron_parser`).
fn cron_parser() -> croner::parser::CronParser {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .build()
}

/// The schedule's first tick after `t`.
fn next_after(entry: &Entry, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    entry
        .cron
        .find_next_occurrence(&t.with_timezone(&entry.tz), false)
        .ok()
        .map(|next| next.with_timezone(&Utc))
}

/// Which ticks after `last` up to `now` are on time, which one is caught up, whether any were
/// dropped, and how far the decision reaches.
fn decide(entry: &Entry, last: DateTime<Utc>, now: DateTime<Utc>) -> Decision {
    // A grace beyond the calendar (a hand-written `ScheduleDef`) means nothing is ever missed.
    let cutoff = i64::try_from(entry.def.grace_ms)
        .ok()
        .and_then(chrono::Duration::try_milliseconds)
        .and_then(|grace| now.checked_sub_signed(grace))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let mut decided_to = now;
    // Missed: after `last`, no later than `cutoff`.
    let (mut catch_up, mut skipped) = (None, false);
    if cutoff > last
        && let Some(latest) = entry
            .cron
            .find_previous_occurrence(&cutoff.with_timezone(&entry.tz), true)
            .ok()
            .map(|t| t.with_timezone(&Utc))
            .filter(|t| *t > last)
    {
        match entry.def.catch_up {
            CatchUp::Last => {
                catch_up = Some(latest);
                // Only the latest is run; any before it are dropped.
                skipped = previous_before(entry, latest).is_some_and(|t| t > last);
            }
            CatchUp::Skip => skipped = true,
        }
    }
    let start = last.max(cutoff);
    let mut on_time = Vec::new();
    for tick in entry.cron.iter_after(start.with_timezone(&entry.tz)) {
        let tick = tick.with_timezone(&Utc);
        if tick > now {
            break;
        }
        if on_time.len() == MAX_BATCH {
            // The rest wait for the next pass.
            decided_to = on_time[MAX_BATCH - 1];
            break;
        }
        on_time.push(tick);
    }
    Decision {
        on_time,
        catch_up,
        skipped,
        decided_to,
    }
}

fn previous_before(entry: &Entry, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    entry
        .cron
        .find_previous_occurrence(&t.with_timezone(&entry.tz), false)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn entry(
        cron: &'static str,
        timezone: &'static str,
        catch_up: CatchUp,
        grace_ms: u64,
    ) -> Entry {
        let def: &'static ScheduleDef = Box::leak(Box::new(ScheduleDef {
            name: "test",
            cron,
            timezone,
            kind: "tick",
            payload: "{}",
            priority: 0,
            catch_up,
            grace_ms,
        }));
        Entry {
            def,
            cron: cron_parser().parse(cron).unwrap(),
            tz: timezone.parse().unwrap(),
            payload: sea_orm::Value::Json(Some(Box::new(serde_json::json!({})))),
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn secs(t: DateTime<Utc>, n: f64) -> DateTime<Utc> {
        t + chrono::Duration::milliseconds((n * 1000.0) as i64)
    }

    #[test]
    fn ticks_are_read_in_the_schedule_s_time_zone() {
        let nightly = entry("0 3 * * *", "Europe/Berlin", CatchUp::Skip, 60_000);
        // 03:00 in Berlin is 01:00 UTC in summer (CEST) and 02:00 UTC in winter (CET).
        assert_eq!(
            next_after(&nightly, at("2026-07-01T00:00:00Z")),
            Some(at("2026-07-01T01:00:00Z"))
        );
        assert_eq!(
            next_after(&nightly, at("2026-12-01T00:00:00Z")),
            Some(at("2026-12-01T02:00:00Z"))
        );
        let utc = entry("0 3 * * *", "UTC", CatchUp::Skip, 60_000);
        assert_eq!(
            next_after(&utc, at("2026-12-01T00:00:00Z")),
            Some(at("2026-12-01T03:00:00Z"))
        );
        let seconds = entry("*/15 * * * * *", "UTC", CatchUp::Skip, 60_000);
        assert_eq!(
            next_after(&seconds, at("2026-12-01T00:00:01Z")),
            Some(at("2026-12-01T00:00:15Z"))
        );
    }

    #[test]
    fn on_time_ticks_are_enqueued_and_missed_ones_follow_catch_up() {
        let t = Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap();
        // Down for 10 s; ticks older than 3 s were missed and are dropped.
        let skip = entry("* * * * * *", "UTC", CatchUp::Skip, 3_000);
        let d = decide(&skip, t, secs(t, 10.5));
        assert_eq!(d.on_time, [secs(t, 8.0), secs(t, 9.0), secs(t, 10.0)]);
        assert_eq!((d.catch_up, d.skipped), (None, true));
        assert_eq!(d.decided_to, secs(t, 10.5));
        // With `last`, the latest missed tick is run once; those before it are dropped.
        let last = entry("* * * * * *", "UTC", CatchUp::Last, 1_000);
        let d = decide(&last, t, secs(t, 10.5));
        assert_eq!(d.catch_up, Some(secs(t, 9.0)));
        assert_eq!(d.on_time, [secs(t, 10.0)]);
        assert!(d.skipped);
        // A single missed tick is caught up with nothing dropped.
        let d = decide(&last, t, secs(t, 2.5));
        assert_eq!(d.catch_up, Some(secs(t, 1.0)));
        assert_eq!(d.on_time, [secs(t, 2.0)]);
        assert!(!d.skipped);
        // A worker on time misses nothing, and decides nothing twice.
        let d = decide(&skip, secs(t, 0.2), secs(t, 1.1));
        assert_eq!(d.on_time, [secs(t, 1.0)]);
        assert_eq!((d.catch_up, d.skipped), (None, false));
        let again = decide(&skip, d.decided_to, secs(t, 1.3));
        assert!(again.on_time.is_empty());
        // A grace beyond the calendar misses nothing (and does not overflow).
        let forever = entry("* * * * * *", "UTC", CatchUp::Skip, u64::MAX);
        let d = decide(&forever, t, secs(t, 2.5));
        assert_eq!(d.on_time, [secs(t, 1.0), secs(t, 2.0)]);
        assert!(!d.skipped);
        // Nothing due.
        let hourly = entry("@hourly", "UTC", CatchUp::Last, 60_000);
        let d = decide(&hourly, secs(t, 1.0), secs(t, 30.0));
        assert!(d.on_time.is_empty());
        assert_eq!((d.catch_up, d.skipped), (None, false));
    }

    #[test]
    fn a_pass_enqueues_at_most_a_batch_and_leaves_the_rest_to_the_next() {
        let t = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
        let wide = entry("* * * * * *", "UTC", CatchUp::Skip, 86_400_000);
        let d = decide(&wide, t, secs(t, 20_000.5));
        assert_eq!(d.on_time.len(), MAX_BATCH);
        assert_eq!(d.decided_to, secs(t, MAX_BATCH as f64));
        let rest = decide(&wide, d.decided_to, secs(t, 20_000.5));
        assert_eq!(rest.on_time.first(), Some(&secs(t, MAX_BATCH as f64 + 1.0)));
    }
}
