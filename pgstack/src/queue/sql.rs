//! The statements of a `[[queue]]`, from `pgstack/sql/queue.sql`, chosen by its options
//! (archive or delete on completion, dead letters, unique keys, priorities).

use std::sync::OnceLock;

use super::def::QueueDef;
use crate::error::Result;
use crate::ident::{Ident, TableName};
use crate::sql::SqlFile;

pub(super) struct QueueSql {
    pub(super) enqueue: String,
    pub(super) enqueue_many: String,
    /// The key modes' enqueues (`unique = true` only): replace, debounce, throttle.
    pub(super) enqueue_replace: Option<String>,
    pub(super) enqueue_debounce: Option<String>,
    pub(super) enqueue_throttle: Option<String>,
    pub(super) claim: String,
    pub(super) claim_turn: String,
    pub(super) claim_turn_wait: String,
    pub(super) complete: String,
    pub(super) retry: String,
    pub(super) kill: String,
    pub(super) extend: String,
    pub(super) release: String,
    pub(super) snooze: String,
    pub(super) notify: String,
    pub(super) next_visible: String,
    pub(super) dead_list: Option<String>,
    pub(super) redrive: Option<String>,
    pub(super) dead_ids: Option<String>,
    pub(super) metrics: String,
    pub(super) wait_start: String,
    pub(super) wait_end: String,
    pub(super) admin: AdminSql,
    pub(super) schedule: ScheduleSql,
}

/// The schedules' statements (`schedule.rs`).
pub(super) struct ScheduleSql {
    pub(super) register: String,
    pub(super) lock: String,
    pub(super) enqueue: String,
    pub(super) advance: String,
}

/// The admin API's statements (`admin.rs`).
pub(super) struct AdminSql {
    pub(super) job_get: String,
    /// `QueueJobList` per state: waiting, scheduled, retrying, running.
    pub(super) list_waiting: String,
    pub(super) list_scheduled: String,
    pub(super) list_retrying: String,
    pub(super) list_running: String,
    pub(super) dead_get: Option<String>,
    pub(super) dead_list: Option<String>,
    pub(super) archive_get: Option<String>,
    pub(super) cancel: String,
    pub(super) retry_now: String,
    pub(super) delete_waiting: String,
    pub(super) delete_dead: Option<String>,
    pub(super) purge: String,
    pub(super) purge_dead: Option<String>,
    pub(super) pause: String,
    pub(super) resume: String,
    pub(super) paused: String,
    pub(super) dead_ids_by_kind: Option<String>,
    pub(super) notify_cancel: String,
}

pub(super) fn sql_file() -> &'static SqlFile {
    static FILE: OnceLock<SqlFile> = OnceLock::new();
    FILE.get_or_init(|| SqlFile::parse(include_str!("../../sql/queue.sql")))
}

impl QueueSql {
    pub(super) fn new(def: &QueueDef) -> Result<QueueSql> {
        let table = TableName::new(def.schema, def.table)?;
        let schema = Ident::new(def.schema)?;
        let dead = format!("{schema}.{}", Ident::new(&format!("{}_dead", def.table))?);
        let archive = format!(
            "{schema}.{}",
            Ident::new(&format!("{}_archive", def.table))?
        );
        let waiters = format!("{schema}.{}", Ident::new("pgstack_queue_waiters")?);
        let pauses = format!("{schema}.{}", Ident::new("pgstack_queue_pauses")?);
        let schedules = format!("{schema}.{}", Ident::new("pgstack_queue_schedules")?);
        // A checked identifier: no quote or backslash to escape.
        let queue = format!("'{}'", Ident::new(def.table)?.as_str());
        let dead_count = if def.dead_letter {
            format!("(SELECT count(*) FROM (SELECT 1 FROM {dead} LIMIT $1) AS d)")
        } else {
            "0::bigint".to_string()
        };
        let table = table.to_string();
        let group_filter = if def.groups {
            format!(
                "AND (r.group_key IS NULL OR NOT EXISTS (\n          \
                 SELECT 1 FROM {table} AS g WHERE g.group_key = r.group_key AND g.id < r.id))"
            )
        } else {
            String::new()
        };
        let vars = [
            ("table", table.as_str()),
            ("dead", dead.as_str()),
            ("archive", archive.as_str()),
            (
                "ready_order",
                if def.priorities {
                    "priority, visible_at"
                } else {
                    "visible_at"
                },
            ),
            ("payload_type", def.payload.sql()),
            ("group_filter", group_filter.as_str()),
            ("dead_count", dead_count.as_str()),
            ("waiters", waiters.as_str()),
            ("pauses", pauses.as_str()),
            ("schedules", schedules.as_str()),
            ("queue", queue.as_str()),
            ("held", "coalesce(q.claimed_at IS NOT NULL, false)"),
        ];
        let file = sql_file();
        let get = |name: &str| file.get(name, &vars);
        let list = |state: &str| {
            let mut with_state = vars.to_vec();
            with_state.push(("state_where", state));
            file.get("QueueJobList", &with_state)
        };
        let kill = if def.dead_letter {
            "QueueKillDead"
        } else if def.archive.is_some() {
            "QueueKillArchive"
        } else {
            "QueueKillDelete"
        };
        Ok(QueueSql {
            enqueue: get(if def.unique {
                "QueueEnqueueUnique"
            } else {
                "QueueEnqueue"
            }),
            enqueue_replace: def.unique.then(|| get("QueueEnqueueReplace")),
            enqueue_debounce: def.unique.then(|| get("QueueEnqueueDebounce")),
            enqueue_throttle: def.unique.then(|| get("QueueEnqueueThrottle")),
            enqueue_many: get(if def.unique {
                "QueueEnqueueManyUnique"
            } else {
                "QueueEnqueueMany"
            }),
            claim: get("QueueClaim"),
            claim_turn: get("QueueClaimTurn"),
            claim_turn_wait: get("QueueClaimTurnWait"),
            complete: get(if def.archive.is_some() {
                "QueueCompleteArchive"
            } else {
                "QueueComplete"
            }),
            retry: get("QueueRetry"),
            kill: get(kill),
            extend: get("QueueExtend"),
            release: get("QueueRelease"),
            snooze: get("QueueSnooze"),
            notify: get("QueueNotify"),
            next_visible: get("QueueNextVisible"),
            dead_list: def.dead_letter.then(|| get("QueueDeadList")),
            redrive: def.dead_letter.then(|| get("QueueRedrive")),
            dead_ids: def.dead_letter.then(|| get("QueueDeadIds")),
            metrics: get("QueueMetrics"),
            wait_start: get("QueueWaitStart"),
            wait_end: get("QueueWaitEnd"),
            admin: AdminSql {
                job_get: get("QueueJobGet"),
                list_waiting: list("claimed_at IS NULL AND attempt = 0 AND visible_at <= now()"),
                list_scheduled: list("claimed_at IS NULL AND attempt = 0 AND visible_at > now()"),
                list_retrying: list("claimed_at IS NULL AND attempt > 0"),
                list_running: list("claimed_at IS NOT NULL"),
                dead_get: def.dead_letter.then(|| get("QueueDeadGet")),
                dead_list: def.dead_letter.then(|| get("QueueDeadListFiltered")),
                archive_get: def.archive.is_some().then(|| get("QueueArchiveGet")),
                cancel: get(if def.dead_letter {
                    "QueueCancelDead"
                } else if def.archive.is_some() {
                    "QueueCancelArchive"
                } else {
                    "QueueCancelDelete"
                }),
                retry_now: get("QueueRetryNow"),
                delete_waiting: get("QueueDeleteWaiting"),
                delete_dead: def.dead_letter.then(|| get("QueueDeleteDead")),
                purge: get("QueuePurge"),
                purge_dead: def.dead_letter.then(|| get("QueuePurgeDead")),
                pause: get("QueuePause"),
                resume: get("QueueResume"),
                paused: get("QueuePaused"),
                dead_ids_by_kind: def.dead_letter.then(|| get("QueueDeadIdsByKind")),
                notify_cancel: get("QueueNotifyCancel"),
            },
            schedule: ScheduleSql {
                register: get("QueueScheduleRegister"),
                lock: get("QueueScheduleLock"),
                enqueue: get("QueueScheduleEnqueue"),
                advance: get("QueueScheduleAdvance"),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{ArchiveDef, Backoff, BackoffKind};
    use crate::value::ValueKind;

    const DEF: QueueDef = QueueDef {
        schema: "public",
        table: "emails",
        payload: ValueKind::Jsonb,
        visibility_timeout_ms: 30_000,
        max_attempts: 5,
        backoff: Backoff {
            kind: BackoffKind::Exponential,
            initial_ms: 1_000,
            max_ms: 60_000,
            jitter: true,
        },
        dead_letter: true,
        priorities: true,
        unique: true,
        groups: true,
        notify_channel: Some("pgstack.public.emails"),
        archive: Some(ArchiveDef {
            retention_ms: 86_400_000,
            partition_ms: 3_600_000,
        }),
        schedules: &[],
    };

    #[test]
    fn every_statement_renders() {
        let sql = QueueSql::new(&DEF).unwrap();
        assert!(sql.claim.contains("ORDER BY priority, visible_at"));
        assert!(
            sql.claim.contains("g.group_key = r.group_key"),
            "{}",
            sql.claim
        );
        assert!(
            sql.complete
                .contains("INSERT INTO \"public\".\"emails_archive\"")
        );
        assert!(sql.kill.contains("INSERT INTO \"public\".\"emails_dead\""));
        assert!(sql.enqueue.contains("ON CONFLICT (unique_key)"));
        for statement in [&sql.claim, &sql.complete, &sql.metrics, &sql.enqueue_many] {
            assert!(
                !statement.contains('{'),
                "unfilled placeholder in {statement}"
            );
        }
        let plain = QueueSql::new(&QueueDef {
            dead_letter: false,
            archive: None,
            priorities: false,
            unique: false,
            groups: false,
            ..DEF
        })
        .unwrap();
        assert!(plain.claim.contains("ORDER BY visible_at"));
        assert!(!plain.claim.contains("group_key"));
        assert!(
            plain
                .kill
                .starts_with("-- Without a dead-letter table or an archive")
        );
        assert!(plain.metrics.contains("0::bigint AS dead"));
        assert!(plain.dead_list.is_none());
    }
}
