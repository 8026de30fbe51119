//! Document collections (`[[document]]`): typed serde documents in a `jsonb` column, with
//! versions for optimistic concurrency, server-side patches, containment queries and declared
//! fields served by generated columns.
//!
//! ```no_run
//! # async fn demo(db: &sea_orm::DatabaseConnection) -> pgstack::Result<()> {
//! use pgstack::document::{DocumentDef, DocumentStore, Field, FieldDef};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Profile { email: String, name: String }
//!
//! // `pgstack-gen generate` writes these into the accessor module of a `[[document]]`.
//! static PROFILES: DocumentStore = DocumentStore::new(DocumentDef {
//!     schema: "public",
//!     table: "user_profiles",
//!     fields: &[FieldDef { name: "email", unique: true, index_name: Some("user_profiles_email_key") }],
//! });
//! const EMAIL: Field<String> = Field::new("email");
//!
//! let meta = PROFILES.insert(db, &Profile { email: "a@example.com".into(), name: "A".into() }).await?;
//! let found = PROFILES.get_by::<Profile, _, _>(db, EMAIL, "a@example.com").await?;
//! assert_eq!(found.map(|d| d.id), Some(meta.id));
//! # Ok(()) }
//! ```

mod def;
mod sql;

use sea_orm::{ConnectionTrait, DbErr, QueryResult, SqlErr, Value};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use self::def::{Doc, DocMeta, DocPage, DocumentDef, Field, FieldDef, MAX_PAGE};
use self::sql::DocSql;
use crate::cluster::Route;
use crate::error::{DbContext, Error, Result};
use crate::handle::Handle;
use crate::json;
use crate::sql::stmt;

/// A `[[document]]` collection. Documents are any serde type, chosen per call.
pub struct DocumentStore {
    def: DocumentDef,
    handle: Handle<DocSql>,
}

impl DocumentStore {
    pub const fn new(def: DocumentDef) -> Self {
        DocumentStore {
            def,
            handle: Handle::new("document", def.table),
        }
    }

    fn facility(&self) -> &'static str {
        self.handle.name()
    }

    fn sql(&self) -> Result<&DocSql> {
        self.handle.sql(|| DocSql::new(&self.def))
    }

    fn encode<T: Serialize + ?Sized>(&self, value: &T, what: &str) -> Result<Value> {
        let json = json::to_json(value).map_err(|e| e.into_error(self.facility(), what))?;
        Ok(Value::Json(Some(Box::new(json))))
    }

    /// A whole document: must be a JSON object (the table's CHECK says so too).
    fn encode_doc<T: Serialize + ?Sized>(&self, doc: &T, what: &str) -> Result<Value> {
        let value = self.encode(doc, what)?;
        if let Value::Json(Some(json)) = &value
            && !json.is_object()
        {
            let found = match **json {
                serde_json::Value::Array(_) => "an array",
                serde_json::Value::String(_) => "a string",
                serde_json::Value::Number(_) => "a number",
                serde_json::Value::Bool(_) => "a boolean",
                _ => "null",
            };
            return Err(self.handle.invalid(format!(
                "a document must serialize to a JSON object, found {found} ({what})"
            )));
        }
        Ok(value)
    }

    fn decode<T: DeserializeOwned>(&self, row: &QueryResult) -> Result<Doc<T>> {
        let f = self.facility();
        let id: i64 = row.try_get_by_index(0).in_facility(f)?;
        let json: serde_json::Value = row.try_get_by_index(1).in_facility(f)?;
        let doc = serde_json::from_value(json).map_err(|source| Error::Json {
            facility: f.to_string(),
            direction: "decode",
            what: format!("document {id} as the requested type"),
            cause: source,
        })?;
        Ok(Doc {
            id,
            doc,
            version: row.try_get_by_index(2).in_facility(f)?,
            created_at: row.try_get_by_index(3).in_facility(f)?,
            updated_at: row.try_get_by_index(4).in_facility(f)?,
        })
    }

    /// Turns a unique-index violation into [`Error::Duplicate`] naming the declared field.
    fn write_error(&self, err: DbErr) -> Error {
        if let Some(SqlErr::UniqueConstraintViolation(message)) = err.sql_err() {
            let field = self.def.fields.iter().find(|f| {
                f.index_name
                    .is_some_and(|index| message.contains(&format!("\"{index}\"")))
            });
            if let Some(field) = field {
                return Error::Duplicate {
                    facility: self.facility().to_string(),
                    field: field.name.to_string(),
                    cause: err,
                };
            }
        }
        Error::Database {
            facility: self.facility().to_string(),
            cause: err,
        }
    }

    fn check_limit(&self, limit: u32) -> Result<i64> {
        if limit == 0 || limit > MAX_PAGE {
            return Err(self.handle.invalid(format!(
                "a page holds 1 to {MAX_PAGE} documents, asked for {limit}"
            )));
        }
        Ok(i64::from(limit))
    }

    fn page<T: DeserializeOwned>(&self, rows: Vec<QueryResult>, limit: i64) -> Result<DocPage<T>> {
        let docs = rows
            .iter()
            .map(|row| self.decode(row))
            .collect::<Result<Vec<Doc<T>>>>()?;
        let next_cursor = if docs.len() as i64 == limit {
            docs.last().map(|d| d.id)
        } else {
            None
        };
        Ok(DocPage { docs, next_cursor })
    }

    /// Stores a new document; returns its id and version 1.
    pub async fn insert<T: Serialize + ?Sized, C: Route>(
        &self,
        db: &C,
        doc: &T,
    ) -> Result<DocMeta> {
        let value = self.encode_doc(doc, "for insert")?;
        let row = self
            .handle
            .traced(
                "insert",
                db.write()
                    .query_one_raw(stmt(&self.sql()?.insert, vec![value])),
            )
            .await
            .map_err(|e| self.write_error(e))?;
        let Some(row) = row else {
            return Err(Error::Database {
                facility: self.facility().to_string(),
                cause: DbErr::RecordNotInserted,
            });
        };
        let f = self.facility();
        Ok(DocMeta {
            id: row.try_get_by_index(0).in_facility(f)?,
            version: row.try_get_by_index(1).in_facility(f)?,
            created_at: row.try_get_by_index(2).in_facility(f)?,
            updated_at: row.try_get_by_index(3).in_facility(f)?,
        })
    }

    /// The document with `id`, if any.
    pub async fn get<T: DeserializeOwned, C: Route>(
        &self,
        db: &C,
        id: i64,
    ) -> Result<Option<Doc<T>>> {
        let row = self
            .handle
            .traced(
                "get",
                db.read()
                    .query_one_raw(stmt(&self.sql()?.get, vec![id.into()])),
            )
            .await
            .in_facility(self.facility())?;
        row.map(|row| self.decode(&row)).transpose()
    }

    /// Replaces the document if its version is still `expected_version`; returns the new
    /// version, or [`Error::Conflict`] with the version found.
    pub async fn replace<T: Serialize + ?Sized, C: Route>(
        &self,
        db: &C,
        id: i64,
        expected_version: i64,
        doc: &T,
    ) -> Result<i64> {
        let value = self.encode_doc(doc, &format!("for document {id}"))?;
        let row = self
            .handle
            .traced(
                "replace",
                db.write().query_one_raw(stmt(
                    &self.sql()?.replace,
                    vec![id.into(), value, expected_version.into()],
                )),
            )
            .await
            .map_err(|e| self.write_error(e))?;
        let f = self.facility();
        let (new_version, current) = match row {
            Some(row) => (
                row.try_get_by_index::<Option<i64>>(0).in_facility(f)?,
                row.try_get_by_index::<Option<i64>>(1).in_facility(f)?,
            ),
            None => (None, None),
        };
        if let Some(version) = new_version {
            return Ok(version);
        }
        let mut current = current;
        if current == Some(expected_version) {
            // The statement waited for a concurrent writer's row lock and then found the row
            // changed; its snapshot still shows the old version. Read the version that won.
            current = self
                .get::<serde_json::Value, _>(db.write(), id)
                .await?
                .map(|doc| doc.version);
        }
        Err(Error::Conflict {
            facility: f.to_string(),
            what: format!("document {id}"),
            expected: expected_version,
            actual: current,
        })
    }

    /// Applies an RFC 7386 JSON merge patch on the server (objects merge, `null` deletes a key);
    /// returns the new version, or `None` if there is no such document.
    pub async fn patch_merge<P: Serialize + ?Sized, C: Route>(
        &self,
        db: &C,
        id: i64,
        patch: &P,
    ) -> Result<Option<i64>> {
        let value = self.encode(patch, &format!("patch for document {id}"))?;
        self.version_returning(db, &self.sql()?.patch_merge, vec![id.into(), value])
            .await
    }

    /// Sets the value at `path` (object keys, or array indexes as digits), creating missing
    /// objects on the way; returns the new version, or `None` if there is no such document.
    pub async fn patch_set<V: Serialize + ?Sized, C: Route>(
        &self,
        db: &C,
        id: i64,
        path: &[&str],
        value: &V,
    ) -> Result<Option<i64>> {
        if path.is_empty() {
            return Err(self.handle.invalid(
                "patch_set needs a non-empty path; use replace for the whole document".to_string(),
            ));
        }
        let value = self.encode(value, &format!("value at {path:?} for document {id}"))?;
        let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        self.version_returning(
            db,
            &self.sql()?.patch_set,
            vec![id.into(), path.into(), value],
        )
        .await
    }

    async fn version_returning<C: Route>(
        &self,
        db: &C,
        sql: &str,
        values: Vec<Value>,
    ) -> Result<Option<i64>> {
        let row = self
            .handle
            .traced("patch", db.write().query_one_raw(stmt(sql, values)))
            .await
            .map_err(|e| self.write_error(e))?;
        row.map(|row| row.try_get_by_index(0).in_facility(self.facility()))
            .transpose()
    }

    /// Deletes the document; `true` if it existed.
    pub async fn delete<C: Route>(&self, db: &C, id: i64) -> Result<bool> {
        let result = self
            .handle
            .traced(
                "delete",
                db.write()
                    .execute_raw(stmt(&self.sql()?.delete, vec![id.into()])),
            )
            .await
            .in_facility(self.facility())?;
        Ok(result.rows_affected() > 0)
    }

    /// Documents containing `pattern` (`doc @> pattern`, served by the GIN index), in id order,
    /// after the cursor `after`.
    pub async fn find_containing<T: DeserializeOwned, P: Serialize + ?Sized, C: Route>(
        &self,
        db: &C,
        pattern: &P,
        after: Option<i64>,
        limit: u32,
    ) -> Result<DocPage<T>> {
        let limit = self.check_limit(limit)?;
        let pattern = self.encode(pattern, "containment pattern")?;
        let rows = self
            .handle
            .traced(
                "find_containing",
                db.read().query_all_raw(stmt(
                    &self.sql()?.find_containing,
                    vec![pattern, after.unwrap_or(0).into(), limit.into()],
                )),
            )
            .await
            .in_facility(self.facility())?;
        self.page(rows, limit)
    }

    /// Documents whose declared `field` equals `value`, in id order, after the cursor `after`.
    pub async fn find_by<T, V, C>(
        &self,
        db: &C,
        field: Field<V>,
        value: impl Into<V>,
        after: Option<i64>,
        limit: u32,
    ) -> Result<DocPage<T>>
    where
        T: DeserializeOwned,
        V: Into<Value>,
        C: Route,
    {
        let limit = self.check_limit(limit)?;
        let sql = self.field_sql(field.name())?;
        let value: Value = value.into().into();
        let rows = self
            .handle
            .traced(
                "find_by",
                db.read().query_all_raw(stmt(
                    sql,
                    vec![value, after.unwrap_or(0).into(), limit.into()],
                )),
            )
            .await
            .in_facility(self.facility())?;
        self.page(rows, limit)
    }

    /// The first document whose declared `field` equals `value`; for a `unique` field, the one.
    pub async fn get_by<T, V, C>(
        &self,
        db: &C,
        field: Field<V>,
        value: impl Into<V>,
    ) -> Result<Option<Doc<T>>>
    where
        T: DeserializeOwned,
        V: Into<Value>,
        C: Route,
    {
        let page = self.find_by(db, field, value, None, 1).await?;
        Ok(page.docs.into_iter().next())
    }

    /// Every document, in id order, `limit` at a time after the cursor `after`.
    pub async fn list<T: DeserializeOwned, C: Route>(
        &self,
        db: &C,
        after: Option<i64>,
        limit: u32,
    ) -> Result<DocPage<T>> {
        let limit = self.check_limit(limit)?;
        let rows = self
            .handle
            .traced(
                "list",
                db.read().query_all_raw(stmt(
                    &self.sql()?.list,
                    vec![after.unwrap_or(0).into(), limit.into()],
                )),
            )
            .await
            .in_facility(self.facility())?;
        self.page(rows, limit)
    }

    fn field_sql(&self, field: &str) -> Result<&str> {
        self.sql()?
            .find_by
            .get(field)
            .map(String::as_str)
            .ok_or_else(|| {
                self.handle.invalid(format!(
                    "`{field}` is not a declared field; declare it under [document.fields] in \
                     pgstack.toml and run `pgstack-gen generate`"
                ))
            })
    }
}
