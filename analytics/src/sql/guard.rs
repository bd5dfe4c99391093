//! The first wall: DuckDB's own parser decides what the text is. `json_serialize_sql` parses
//! with the same parser that runs queries and serializes only SELECT-shaped statements, so
//! anything else comes back as an error instead of a statement list.

use super::SqlError;
use duckdb::Connection;
use serde::Deserialize;

#[derive(Deserialize)]
struct Parsed {
    error: bool,
    #[serde(default)]
    error_type: String,
    #[serde(default)]
    error_message: String,
    #[serde(default)]
    statements: Vec<serde::de::IgnoredAny>,
}

/// Accepts exactly one SELECT-shaped statement.
pub(super) fn check(conn: &Connection, sql: &str) -> Result<(), SqlError> {
    let json: String = conn
        .query_row("SELECT json_serialize_sql(?::VARCHAR)", [sql], |row| row.get(0))
        .map_err(|error| SqlError::Failed(error.to_string()))?;
    let parsed: Parsed =
        serde_json::from_str(&json).map_err(|error| SqlError::Failed(format!("parser output: {error}")))?;
    if parsed.error {
        return Err(match parsed.error_type.as_str() {
            // "Only SELECT statements can be serialized": a parsed statement of another kind.
            "not implemented" => SqlError::NotReadOnly,
            _ => SqlError::Syntax(format!("Parser Error: {}", parsed.error_message)),
        });
    }
    match parsed.statements.len() {
        0 => Err(SqlError::Empty),
        1 => Ok(()),
        n => Err(SqlError::MultipleStatements(n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(sql: &str) -> Result<(), SqlError> {
        let conn = Connection::open_in_memory().expect("open");
        check(&conn, sql)
    }

    #[test]
    fn select_shaped_statements_pass() {
        for sql in [
            "SELECT 1",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "DESCRIBE requests",
            "SUMMARIZE requests",
            "SHOW TABLES",
            "FROM requests",
            "VALUES (1)",
            "SELECT 1; -- trailing comment",
        ] {
            assert!(verdict(sql).is_ok(), "{sql}");
        }
    }

    #[test]
    fn everything_else_is_refused() {
        for sql in [
            "COPY requests TO '/tmp/x.csv'",
            "ATTACH '/tmp/x.db'",
            "INSTALL httpfs",
            "LOAD httpfs",
            "SET threads = 1",
            "RESET threads",
            "PRAGMA version",
            "CREATE TABLE x (a INT)",
            "INSERT INTO requests DEFAULT VALUES",
            "UPDATE requests SET status = 1",
            "DELETE FROM requests",
            "DROP TABLE requests",
            "CHECKPOINT",
            "CALL pragma_version()",
            "EXPORT DATABASE '/tmp/x'",
            "SELECT 1; DROP TABLE requests",
        ] {
            assert!(matches!(verdict(sql), Err(SqlError::NotReadOnly)), "{sql}");
        }
        assert!(matches!(
            verdict("SELECT 1; SELECT 2"),
            Err(SqlError::MultipleStatements(2))
        ));
        assert!(matches!(verdict("SELEC 1"), Err(SqlError::Syntax(_))));
        assert!(matches!(verdict("  -- nothing"), Err(SqlError::Empty)));
    }
}
