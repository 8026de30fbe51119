//! Reading a queue's `schedules = [{ name, cron, kind, .. }]`.
//!
//! Cron expressions are parsed by `croner` with the settings the runtime uses
//! ([`cron_parser`]), time zones by `chrono-tz`: a spec that generates is one whose every
//! schedule the worker can evaluate.

use std::collections::HashMap;

use toml::de::DeValue;

use crate::duration::SpecDuration;
use crate::error::Ctxt;
use crate::model::{CatchUp, Schedule, ValueType};
use crate::names::is_facility_name;
use crate::reader::{Table, Value, did_you_mean, integer_value, type_name};

const KEYS: &[&str] = &[
    "name", "cron", "kind", "payload", "timezone", "catch_up", "grace", "priority",
];

/// The cron dialect of schedules: five fields (minute, hour, day of month, month, weekday),
/// six with seconds first, or a nickname (`@daily`). The runtime parses with the same
/// settings.
pub(crate) fn cron_parser() -> croner::parser::CronParser {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .build()
}

/// The default `grace`: a tick enqueued more than a minute late counts as missed.
pub(crate) const DEFAULT_GRACE_MS: u64 = 60_000;

pub(super) fn read_schedules(
    cx: &mut Ctxt<'_>,
    queue: &Table<'_, '_>,
    payload: ValueType,
    priorities: bool,
) -> Vec<Schedule> {
    let Some(value) = queue.get("schedules") else {
        return Vec::new();
    };
    let DeValue::Array(items) = value.get_ref() else {
        cx.error(
            &value.span(),
            format!(
                "`schedules` in {} must be a list of tables, e.g. `[{{ name = \"nightly\", \
                 cron = \"0 3 * * *\", kind = \"digest\" }}]`, found {}",
                queue.context,
                type_name(value)
            ),
        );
        return Vec::new();
    };
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    for item in items.iter() {
        let name = match item.get_ref() {
            DeValue::Table(t) => t.get("name").and_then(|n| match n.get_ref() {
                DeValue::String(s) => Some((s.to_string(), n.span())),
                _ => None,
            }),
            _ => None,
        };
        let context = match &name {
            Some((name, _)) => format!("schedule `{name}` of {}", queue.context),
            None => format!("a schedule of {}", queue.context),
        };
        let Some(table) = Table::open(cx, item, context, KEYS) else {
            continue;
        };
        if let Some((name, span)) = &name {
            let (line, _) = crate::error::line_column(cx.source(), span.start);
            if let Some(first) = seen.get(name) {
                cx.error(
                    span,
                    format!(
                        "schedule `{name}` in {} is already declared on line {first}; schedule \
                         names are unique within a queue",
                        queue.context
                    ),
                );
                continue;
            }
            seen.insert(name.clone(), line);
        }
        if let Some(schedule) = read_schedule(cx, &table, payload, priorities) {
            out.push(schedule);
        }
    }
    out
}

fn read_schedule(
    cx: &mut Ctxt<'_>,
    table: &Table<'_, '_>,
    payload: ValueType,
    priorities: bool,
) -> Option<Schedule> {
    let name = table
        .required_string(cx, "name", "name it, e.g. `name = \"nightly_digest\"`")
        .and_then(|(name, span)| {
            if is_facility_name(name) {
                Some(name.to_string())
            } else {
                cx.error(
                    &span,
                    format!(
                        "schedule name `{name}` in {} must match `^[a-z][a-z0-9_]{{0,39}}$`",
                        table.context
                    ),
                );
                None
            }
        });
    let context = &table.context;
    let cron = table
        .required_string(
            cx,
            "cron",
            "say when it runs, e.g. `cron = \"0 3 * * *\"` (03:00 every day)",
        )
        .and_then(|(cron, span)| match check_cron(cron) {
            Ok(()) => Some(cron.to_string()),
            Err(message) => {
                cx.error(
                    &span,
                    format!("`cron` in {context}: `{cron}` is not a cron expression: {message}"),
                );
                None
            }
        });
    let timezone = match table.string(cx, "timezone") {
        None => Some("UTC".to_string()),
        Some((zone, span)) => match zone.parse::<chrono_tz::Tz>() {
            Ok(tz) => Some(tz.name().to_string()),
            Err(_) => {
                let names: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|t| t.name()).collect();
                cx.error(
                    &span,
                    format!(
                        "`timezone` in {context} is `{zone}`, which is not an IANA time zone \
                         name{}; write e.g. `\"Europe/Berlin\"` or `\"UTC\"`",
                        did_you_mean(zone, &names)
                    ),
                );
                None
            }
        },
    };
    let kind = table
        .required_string(
            cx,
            "kind",
            "name the job kind each tick enqueues, e.g. `kind = \"digest\"`",
        )
        .and_then(|(kind, span)| {
            if kind.is_empty() {
                cx.error(&span, format!("`kind` in {context} is empty"));
                None
            } else {
                Some(kind.to_string())
            }
        });
    let payload = read_payload(cx, table, context, payload);
    let priority = match table.get("priority") {
        None => 0,
        Some(value) if !priorities => {
            cx.error(
                &value.span(),
                format!(
                    "`priority` in {context} needs `priorities = true` on its queue; set it or \
                     remove the key"
                ),
            );
            0
        }
        Some(_) => table
            .integer(cx, "priority", (-32_768, 32_767), "lower runs first")
            .map_or(0, |(n, _)| n as i16),
    };
    let catch_up = table.choice(
        cx,
        "catch_up",
        &[("skip", CatchUp::Skip), ("last", CatchUp::Last)],
        CatchUp::Skip,
    );
    let grace = table
        .duration(cx, "grace")
        .unwrap_or(SpecDuration::from_millis(DEFAULT_GRACE_MS));
    if grace.as_millis() < 1_000
        && let Some(span) = table.key_span("grace")
    {
        cx.error(
            &span,
            format!("`grace` in {context} must be at least 1s, found `{grace}`"),
        );
    }
    Some(Schedule {
        name: name?,
        cron: cron?,
        timezone: timezone?,
        kind: kind?,
        payload: payload?,
        priority,
        catch_up,
        grace,
    })
}

/// Parses `cron` as the runtime will, and makes sure it ever fires.
fn check_cron(cron: &str) -> Result<(), String> {
    let parsed = cron_parser().parse(cron).map_err(|e| {
        format!(
            "{}; write five fields (minute hour day-of-month month weekday), six with seconds \
             first, or `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`",
            e.to_string().trim_end_matches('.')
        )
    })?;
    let start = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH
        + chrono::Duration::days(365 * 56)
        + chrono::Duration::seconds(1);
    parsed
        .find_next_occurrence(&start, false)
        .map(|_| ())
        .map_err(|_| "it never fires (no date matches all its fields)".to_string())
}

/// `payload`: any TOML value for a jsonb queue (as JSON), a string for a bytea queue; `{}`
/// and empty bytes when absent.
fn read_payload(
    cx: &mut Ctxt<'_>,
    table: &Table<'_, '_>,
    context: &str,
    payload: ValueType,
) -> Option<String> {
    let Some(value) = table.get("payload") else {
        return Some(match payload {
            ValueType::Bytea => String::new(),
            _ => "{}".to_string(),
        });
    };
    if payload == ValueType::Bytea {
        return match value.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            _ => {
                cx.error(
                    &value.span(),
                    format!(
                        "`payload` in {context} must be a string (its UTF-8 bytes are the \
                         job's payload on this `payload = \"bytea\"` queue), found {}",
                        type_name(value)
                    ),
                );
                None
            }
        };
    }
    match to_json(value) {
        Ok(json) => Some(json.to_string()),
        Err((span, message)) => {
            cx.error(&span, format!("`payload` in {context}: {message}"));
            None
        }
    }
}

/// A TOML value as JSON; datetimes become their RFC 3339 text.
fn to_json(value: &Value<'_>) -> Result<serde_json::Value, (std::ops::Range<usize>, String)> {
    use serde_json::Value as J;
    Ok(match value.get_ref() {
        DeValue::String(s) => J::String(s.to_string()),
        DeValue::Boolean(b) => J::Bool(*b),
        DeValue::Datetime(d) => J::String(d.to_string()),
        DeValue::Integer(int) => match integer_value(int) {
            Some(n) => J::from(n),
            None => {
                return Err((
                    value.span(),
                    format!("`{}` is beyond a 64-bit integer", int.as_str()),
                ));
            }
        },
        DeValue::Float(float) => {
            let text: String = float.as_str().chars().filter(|c| *c != '_').collect();
            match text
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
            {
                Some(n) => J::Number(n),
                None => {
                    return Err((
                        value.span(),
                        format!(
                            "`{}` has no JSON form (JSON has no inf or nan)",
                            float.as_str()
                        ),
                    ));
                }
            }
        }
        DeValue::Array(items) => J::Array(items.iter().map(to_json).collect::<Result<_, _>>()?),
        DeValue::Table(table) => {
            let mut map = serde_json::Map::new();
            for (key, item) in table.iter() {
                map.insert(key.get_ref().to_string(), to_json(item)?);
            }
            J::Object(map)
        }
    })
}
