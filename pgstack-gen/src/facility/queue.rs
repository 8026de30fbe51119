//! `[[queue]]`: a small hot table of waiting and running jobs, a dead-letter table, a
//! range-partitioned archive, and a NOTIFY trigger.
//!
//! A job is waiting while `claimed_at IS NULL` and running while it is set; `visible_at` is when
//! it may next be claimed: its scheduled time, its retry time, or the end of its lease. Each state
//! has a partial index that serves the claim query and nothing else.

use std::collections::BTreeMap;

use pgstack_spec::names::queue_channel;
use pgstack_spec::{BackoffKind, Queue, Spec};
use serde::Serialize;

use super::{EntityCtx, add_function};
use crate::error::GenError;
use crate::schema::{
    Column, Function, Index, PartitionOf, Schema, Table, Trigger, object_name, quote,
};
use crate::templates;

/// Columns shared by the hot, dead-letter and archive tables (without the hot table's
/// lease columns and identity).
fn job_columns(queue: &Queue) -> Vec<Column> {
    vec![
        Column::new("kind", "text", true),
        Column::new("payload", queue.payload.sql(), true),
        Column::new("priority", "smallint", true).default("0"),
        Column::new("attempt", "integer", true).default("0"),
        Column::new("max_attempts", "integer", true).default(&queue.max_attempts.to_string()),
        Column::new("unique_key", "text", false),
        Column::new("last_error", "text", false),
        Column::new("created_at", "timestamptz", true).default("now()"),
    ]
}

fn table(queue: &Queue, name: String, columns: Vec<Column>, primary_key: &[&str]) -> Table {
    Table {
        name,
        kind: "queue".to_string(),
        facility: queue.name.clone(),
        columns,
        primary_key: primary_key.iter().map(|c| c.to_string()).collect(),
        checks: Vec::new(),
        unlogged: false,
        storage: BTreeMap::new(),
        partition_by: None,
        partition_of: None,
        comment: None,
    }
}

/// The options that live only in the runtime, recorded on the table so a change to them is a
/// migration too (and visible from SQL).
fn options_comment(queue: &Queue) -> String {
    let backoff = &queue.backoff;
    let kind = match backoff.kind {
        BackoffKind::Exponential => "exponential",
        BackoffKind::Linear => "linear",
        BackoffKind::Fixed => "fixed",
    };
    format!(
        "pgstack queue `{}`: visibility_timeout={} max_attempts={} backoff={kind} initial={} max={} jitter={}",
        queue.name,
        queue.visibility_timeout,
        queue.max_attempts,
        backoff.initial,
        backoff.max,
        backoff.jitter
    )
}

pub(super) fn add_objects(queue: &Queue, schema: &mut Schema) -> Result<(), GenError> {
    let name = &queue.name;
    let mut columns = vec![Column::new("id", "bigint", true).identity()];
    columns.extend(job_columns(queue));
    columns.push(Column::new("visible_at", "timestamptz", true).default("now()"));
    columns.push(Column::new("claimed_at", "timestamptz", false));
    // Jobs sharing a group key run one at a time in enqueue order (`groups = true`; the
    // column is on every queue's hot table so that one set of enqueue statements serves all).
    columns.push(Column::new("group_key", "text", false));
    let mut hot = table(queue, name.clone(), columns, &["id"]);
    // Every claim and completion rewrites or deletes rows: leave room on each page for the new
    // versions, and let autovacuum keep up with a table whose rows are all short-lived.
    hot.storage = BTreeMap::from(
        [
            ("fillfactor", "70"),
            ("autovacuum_vacuum_scale_factor", "0.02"),
            ("autovacuum_vacuum_threshold", "500"),
            ("autovacuum_vacuum_insert_scale_factor", "0.02"),
            ("autovacuum_analyze_scale_factor", "0.05"),
            ("autovacuum_vacuum_cost_delay", "0"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    hot.comment = Some(options_comment(queue));
    schema.add_table(hot);

    // Waiting jobs, in claim order: the claim reads this index from its start.
    let ready_keys = if queue.priorities {
        format!("{}, {}", quote("priority"), quote("visible_at"))
    } else {
        quote("visible_at")
    };
    schema.add_index(Index {
        name: object_name(name, "ready_idx"),
        table: name.clone(),
        unique: false,
        method: None,
        keys: ready_keys,
        predicate: Some(format!("{} IS NULL", quote("claimed_at"))),
        with: Default::default(),
    });
    // `groups = true`: a grouped job's claim looks for an earlier job of its group.
    if queue.groups {
        schema.add_index(Index {
            name: object_name(name, "group_idx"),
            table: name.clone(),
            unique: false,
            method: None,
            keys: format!("{}, {}", quote("group_key"), quote("id")),
            predicate: Some(format!("{} IS NOT NULL", quote("group_key"))),
            with: Default::default(),
        });
    }
    // Running jobs by lease expiry: the claim takes expired leases first; metrics count it.
    schema.add_index(Index {
        name: object_name(name, "lease_idx"),
        table: name.clone(),
        unique: false,
        method: None,
        keys: quote("visible_at"),
        predicate: Some(format!("{} IS NOT NULL", quote("claimed_at"))),
        with: Default::default(),
    });
    if queue.unique {
        schema.add_index(Index {
            name: object_name(name, "unique_key_key"),
            table: name.clone(),
            unique: true,
            method: None,
            keys: quote("unique_key"),
            predicate: Some(format!("{} IS NOT NULL", quote("unique_key"))),
            with: Default::default(),
        });
    }

    if queue.dead_letter {
        let mut columns = vec![Column::new("id", "bigint", true)];
        columns.extend(job_columns(queue));
        columns.push(Column::new("failed_at", "timestamptz", true).default("now()"));
        schema.add_table(table(queue, format!("{name}_dead"), columns, &["id"]));
    }

    if let Some(archive) = &queue.archive {
        let archive_name = format!("{name}_archive");
        let mut columns = vec![Column::new("id", "bigint", true)];
        columns.extend(job_columns(queue));
        columns.push(Column::new("finished_at", "timestamptz", true).default("now()"));
        columns.push(Column::new("outcome", "text", true));
        let mut parent = table(queue, archive_name.clone(), columns, &["id", "finished_at"]);
        parent.partition_by = Some(format!("RANGE ({})", quote("finished_at")));
        parent.comment = Some(format!(
            "pgstack queue `{name}` archive: partition={} retention={}; partitions are created \
             ahead and dropped by Queue::maintain",
            archive.partition, archive.retention
        ));
        schema.add_table(parent);
        // Catches rows no dated partition covers yet, so a completion never fails for want of
        // a partition; maintenance moves them out when it creates the partition.
        let mut default = table(queue, format!("{archive_name}_default"), Vec::new(), &[]);
        default.partition_of = Some(PartitionOf {
            parent: archive_name,
            bound: "DEFAULT".to_string(),
        });
        schema.add_table(default);
    }

    // Paused queues, one row each, shared by the schema's queues: a claim checks it, so a
    // pause reaches every worker in every process at its next claim. Logged: a pause outlives
    // a restart.
    schema.add_table(Table {
        name: "pgstack_queue_pauses".to_string(),
        kind: "helpers".to_string(),
        facility: String::new(),
        columns: vec![
            Column::new("queue", "text", true),
            Column::new("paused_at", "timestamptz", true).default("now()"),
            Column::new("reason", "text", false),
        ],
        primary_key: vec!["queue".to_string()],
        checks: Vec::new(),
        unlogged: false,
        storage: BTreeMap::new(),
        partition_by: None,
        partition_of: None,
        comment: Some(
            "pgstack: paused queues; workers claim nothing from a queue listed here".to_string(),
        ),
    });
    if !queue.schedules.is_empty() {
        // Recurring jobs, one row per schedule, shared by the schema's queues: `last_tick` is
        // how far its ticks are decided; a worker's pass locks the row while it enqueues
        // (pgstack/src/queue/schedule.rs). Logged: the ticks must survive a crash.
        schema.add_table(Table {
            name: "pgstack_queue_schedules".to_string(),
            kind: "helpers".to_string(),
            facility: String::new(),
            columns: vec![
                Column::new("queue", "text", true),
                Column::new("name", "text", true),
                Column::new("cron", "text", true),
                Column::new("timezone", "text", true),
                Column::new("last_tick", "timestamptz", true),
                Column::new("ticked_at", "timestamptz", false),
            ],
            primary_key: vec!["queue".to_string(), "name".to_string()],
            checks: Vec::new(),
            unlogged: false,
            storage: BTreeMap::new(),
            partition_by: None,
            partition_of: None,
            comment: Some(
                "pgstack: queue schedules; every tick up to last_tick is enqueued or skipped"
                    .to_string(),
            ),
        });
    }
    add_enqueue_function(queue, schema)?;
    if queue.notify {
        // Idle listening workers, one row each, shared by the schema's queues. UNLOGGED: it is
        // rewritten all the time and worth nothing after a crash (workers re-register).
        let mut waiters = Table {
            name: "pgstack_queue_waiters".to_string(),
            kind: "helpers".to_string(),
            facility: String::new(),
            columns: vec![
                Column::new("channel", "text", true),
                Column::new("worker", "text", true),
                Column::new("seen_at", "timestamptz", true).default("now()"),
            ],
            primary_key: vec!["channel".to_string(), "worker".to_string()],
            checks: Vec::new(),
            unlogged: true,
            storage: BTreeMap::new(),
            partition_by: None,
            partition_of: None,
            comment: None,
        };
        waiters.comment = Some(
            "pgstack: queue workers waiting for a NOTIFY; the notify trigger wakes them only \
             when one is here"
                .to_string(),
        );
        schema.add_table(waiters);
        add_function(schema, "notify", "")?;
        let channel = queue_channel(&schema.schema, name);
        schema.add_trigger(Trigger {
            name: object_name(name, "notify"),
            table: name.clone(),
            definition: format!(
                "AFTER INSERT ON {}.{} FOR EACH STATEMENT EXECUTE FUNCTION {}.{}({})",
                quote(&schema.schema),
                quote(name),
                quote(&schema.schema),
                quote("pgstack_notify"),
                crate::schema::literal(&channel)
            ),
        });
    }
    Ok(())
}

/// `<queue>_enqueue(kind, payload, run_at, [priority,] max_attempts[, unique_key])`: enqueue
/// from SQL (`templates/sql/queue_enqueue.sql`). PL/pgSQL, so it may be created before the
/// table it inserts into (helper functions come first in a migration).
fn add_enqueue_function(queue: &Queue, schema: &mut Schema) -> Result<(), GenError> {
    #[derive(Serialize)]
    struct Ctx<'a> {
        schema: &'a str,
        table: &'a str,
        function: &'a str,
        payload_type: &'a str,
        max_attempts: u32,
        priorities: bool,
        unique: bool,
        /// What each column gets: a parameter (`$n`) or a constant.
        p_priority: String,
        p_attempts: String,
        p_unique: String,
        p_group: String,
    }
    // Parameters after kind, payload and run_at ($1-$3), in declaration order.
    let mut next = 3;
    let mut param = |present: bool, absent: &str| {
        if present {
            next += 1;
            format!("${next}")
        } else {
            absent.to_string()
        }
    };
    let (p_priority, p_attempts, p_unique, p_group) = (
        param(queue.priorities, "0"),
        param(true, ""),
        param(queue.unique, "NULL"),
        param(true, ""),
    );
    let function = object_name(&queue.name, "enqueue");
    let definition = templates::render(
        "sql/queue_enqueue.sql",
        &Ctx {
            schema: &schema.schema,
            table: &queue.name,
            function: &function,
            payload_type: queue.payload.sql(),
            max_attempts: queue.max_attempts,
            priorities: queue.priorities,
            unique: queue.unique,
            p_priority,
            p_attempts,
            p_unique,
            p_group,
        },
    )?;
    let mut args = vec!["text", queue.payload.sql(), "timestamptz"];
    if queue.priorities {
        args.push("smallint");
    }
    args.push("integer");
    if queue.unique {
        args.push("text");
    }
    args.push("text");
    schema.add_function(Function {
        name: function,
        args: args.join(", "),
        definition,
    });
    Ok(())
}

#[derive(Serialize)]
struct QueueCtx<'a> {
    spec_file: &'a str,
    schema: &'a str,
    queue: &'a Queue,
    tables: String,
    /// The `QueueDef` expression (`pgstack_spec::defs`).
    def: String,
    entities: Vec<EntityCtx>,
}

pub(super) fn render(
    queue: &Queue,
    spec: &Spec,
    schema: &Schema,
    spec_file: &str,
) -> Result<String, GenError> {
    let name = &queue.name;
    let mut entities = vec![EntityCtx::new(&schema.tables[name], None)];
    let mut tables = vec![format!("`{}.{name}`", spec.project.schema)];
    if queue.dead_letter {
        let dead = format!("{name}_dead");
        tables.push(format!("`{}.{dead}`", spec.project.schema));
        entities.push(EntityCtx::named("dead", &schema.tables[&dead], None));
    }
    if queue.archive.is_some() {
        let archive = format!("{name}_archive");
        tables.push(format!("`{}.{archive}`", spec.project.schema));
        entities.push(EntityCtx::named(
            "archive",
            &schema.tables[&archive],
            Some("Range-partitioned by `finished_at`; read it, `Queue::maintain` manages its partitions."),
        ));
    }
    templates::render(
        "rust/queue.rs",
        &QueueCtx {
            spec_file,
            schema: &spec.project.schema,
            queue,
            tables: tables.join(", "),
            def: pgstack_spec::defs::queue_def(&spec.project.schema, queue).to_string(),
            entities,
        },
    )
}
