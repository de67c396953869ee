//! The two engines' SQL: the few places where SQLite and PostgreSQL differ, rewritten from the
//! one text each query is written in, and the one binding the `any` driver gets wrong.

use std::borrow::Cow;

use super::{Engine, Store};

impl Store {
    /// `sql`, written for SQLite, in this store's dialect. The differences the store's
    /// queries meet: `DB_NOW_MS` stands for the database's clock in Unix milliseconds (what
    /// leases are measured by, whatever the hosts' clocks say); `FOR UPDATE SKIP LOCKED` is
    /// PostgreSQL's alone (SQLite's one writer needs no row locks); SQLite's
    /// `printf('%!.17g', X)` (a double as text that reads back as the very same f64) is
    /// `(X)::text` on PostgreSQL, whose float output is the shortest text that reads back
    /// exactly. Every other query is one text for both engines.
    pub(super) fn sql<'a>(&self, sql: &'a str) -> Cow<'a, str> {
        const EXACT: &str = "printf('%!.17g', ";
        const NOW: &str = "DB_NOW_MS";
        const SKIP_LOCKED: &str = "FOR UPDATE SKIP LOCKED";
        if !sql.contains(NOW)
            && !sql.contains(SKIP_LOCKED)
            && (self.engine == Engine::Sqlite || !sql.contains(EXACT))
        {
            return Cow::Borrowed(sql);
        }
        let sql = match self.engine {
            Engine::Sqlite => sql
                .replace(NOW, "CAST(unixepoch('subsec') * 1000 AS INTEGER)")
                .replace(SKIP_LOCKED, ""),
            Engine::Postgres => sql.replace(
                NOW,
                "CAST(FLOOR(EXTRACT(EPOCH FROM clock_timestamp()) * 1000) AS BIGINT)",
            ),
        };
        if self.engine == Engine::Sqlite || !sql.contains(EXACT) {
            return Cow::Owned(sql);
        }
        let mut out = String::with_capacity(sql.len());
        let mut rest = sql.as_str();
        while let Some(start) = rest.find(EXACT) {
            out.push_str(&rest[..start]);
            let argument = &rest[start + EXACT.len()..];
            // The argument is a column reference: it holds no parenthesis.
            let end = argument.find(')').unwrap_or(argument.len());
            out.push('(');
            out.push_str(&argument[..end]);
            out.push_str(")::text");
            rest = argument.get(end + 1..).unwrap_or_default();
        }
        out.push_str(rest);
        Cow::Owned(out)
    }
}

/// Binding an optional float so that PostgreSQL gets an 8-byte float either way.
///
/// sqlx 0.8's `any` driver sends a missing `f64` to PostgreSQL as a 4-byte float parameter (and
/// a missing `f32` as an 8-byte one), and PostgreSQL keeps the parameter types a statement was
/// first prepared with: a statement first run without a value would then refuse every value
/// after it ("incorrect binary data format"). A missing value is therefore bound as the type
/// that reaches PostgreSQL as 8 bytes; SQLite gets a NULL either way. The store's tests on
/// PostgreSQL run these statements both ways round and would catch a change in the driver.
pub(super) trait BindOptionalF64 {
    fn bind_optional_f64(self, value: Option<f64>) -> Self;
}

impl<'q> BindOptionalF64 for sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    fn bind_optional_f64(self, value: Option<f64>) -> Self {
        match value {
            Some(value) => self.bind(value),
            None => self.bind(None::<f32>),
        }
    }
}
