//! `CacheReader`: many tasks' gets answered by few `= ANY` statements.

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

use super::Cache;
use crate::coalesce::{Answer, Coalescer};
use crate::error::{Error, Result};
use crate::value::ValueKind;

#[derive(Clone)]
pub(super) enum RawValue {
    Text(String),
    Bytes(Vec<u8>),
}

type Reply = oneshot::Sender<Result<Option<RawValue>>>;

pub(super) struct ReadRequest {
    pub(super) key: String,
    pub(super) reply: Reply,
}

/// Coalesces concurrent gets into batched statements; see [`Cache::reader`]. Cheap to clone;
/// its connections go back to the pool when the last clone is dropped.
#[derive(Clone)]
pub struct CacheReader {
    pub(super) cache: &'static Cache,
    pub(super) requests: Coalescer<ReadRequest>,
}

impl CacheReader {
    async fn fetch(&self, key: &str) -> Result<Option<RawValue>> {
        self.cache.check_key(key)?;
        let (reply, answer) = oneshot::channel();
        let request = ReadRequest {
            key: key.to_string(),
            reply,
        };
        let closed = || {
            self.cache
                .invalid("the cache reader's connections stopped".to_string())
        };
        self.requests.send(request).map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    /// As [`Cache::get`].
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.cache.expect_kind(ValueKind::Jsonb)?;
        match self.fetch(key).await? {
            Some(RawValue::Text(text)) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| self.cache.decode_error(e)),
            _ => Ok(None),
        }
    }

    /// As [`Cache::get_bytes`].
    pub async fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.cache.expect_kind(ValueKind::Bytea)?;
        match self.fetch(key).await? {
            Some(RawValue::Bytes(bytes)) => Ok(Some(bytes)),
            _ => Ok(None),
        }
    }
}

/// One of a reader's loops: its own connection, one `= ANY` statement per batch.
pub(super) struct ReadLoop {
    pub(super) cache: &'static Cache,
    pub(super) options: sea_orm::sqlx::postgres::PgConnectOptions,
    pub(super) connection: Option<sea_orm::sqlx::PgConnection>,
}

impl ReadLoop {
    /// The values of the live keys among `keys`.
    async fn fetch(&mut self, keys: &[&str]) -> Result<Vec<(String, RawValue)>> {
        use sea_orm::sqlx;
        let cache = self.cache;
        let sql = cache.sql()?;
        let conn = match &mut self.connection {
            Some(conn) => conn,
            none => none.insert(
                <sqlx::PgConnection as sqlx::Connection>::connect_with(&self.options)
                    .await
                    .map_err(|e| Error::Database {
                        facility: cache.name().to_string(),
                        cause: sea_orm::DbErr::Conn(sea_orm::RuntimeErr::Internal(format!(
                            "the cache reader cannot open its connection: {e}"
                        ))),
                    })?,
            ),
        };
        let db_error = |e: sqlx::Error| Error::Database {
            facility: cache.name().to_string(),
            cause: sea_orm::DbErr::Custom(e.to_string()),
        };
        // The SQL is pgstack's own, with a checked table name; values are bound.
        Ok(match cache.def.value {
            ValueKind::Jsonb => {
                let rows: Vec<(String, String)> =
                    sqlx::query_as(sqlx::AssertSqlSafe(sql.get_many_text.as_str()))
                        .bind(keys)
                        .fetch_all(&mut *conn)
                        .await
                        .map_err(db_error)?;
                rows.into_iter()
                    .map(|(k, v)| (k, RawValue::Text(v)))
                    .collect()
            }
            ValueKind::Bytea => {
                let rows: Vec<(String, Vec<u8>)> =
                    sqlx::query_as(sqlx::AssertSqlSafe(sql.get_many.as_str()))
                        .bind(keys)
                        .fetch_all(&mut *conn)
                        .await
                        .map_err(db_error)?;
                rows.into_iter()
                    .map(|(k, v)| (k, RawValue::Bytes(v)))
                    .collect()
            }
        })
    }
}

impl Answer for ReadLoop {
    type Request = ReadRequest;

    async fn answer(&mut self, batch: Vec<ReadRequest>) -> Vec<ReadRequest> {
        // Callers asking for the same key share one answer.
        let mut waiting: HashMap<String, Vec<Reply>> = HashMap::with_capacity(batch.len());
        let asked = batch.len();
        for request in batch {
            waiting.entry(request.key).or_default().push(request.reply);
        }
        let keys: Vec<&str> = waiting.keys().map(String::as_str).collect();
        let result = self.fetch(&keys).await;
        match result {
            Ok(rows) => {
                let mut hits = 0;
                for (key, value) in rows {
                    let Some(mut replies) = waiting.remove(&key) else {
                        continue;
                    };
                    hits += replies.len();
                    let last = replies.pop();
                    for reply in replies {
                        let _ = reply.send(Ok(Some(value.clone())));
                    }
                    if let Some(reply) = last {
                        let _ = reply.send(Ok(Some(value)));
                    }
                }
                self.cache.count_lookup(hits, asked);
                for reply in waiting.into_values().flatten() {
                    let _ = reply.send(Ok(None));
                }
            }
            Err(e) => {
                // The connection may be broken: take a fresh one next time.
                self.connection = None;
                let message = e.to_string();
                for reply in waiting.into_values().flatten() {
                    let _ = reply.send(Err(Error::Database {
                        facility: self.cache.name().to_string(),
                        cause: sea_orm::DbErr::Custom(message.clone()),
                    }));
                }
            }
        }
        Vec::new()
    }
}
