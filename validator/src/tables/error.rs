//! What can go wrong reading, building and writing tables.

/// Why a table could not be read, built or written. Rows are numbered from 1, not counting a
/// CSV file's header line.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// An error while reading the file `path`.
    #[error("{path}: {error}")]
    File {
        /// The file.
        path: String,
        /// What went wrong in it.
        error: Box<TableError>,
    },
    /// The file's extension names no known format.
    #[error("{path}: unknown table format: the file name must end in .csv or .parquet")]
    UnknownFormat {
        /// The file.
        path: String,
    },
    /// The file is beyond a bound of [`super::ReadLimits`].
    #[error("the table is too large: more than {limit} {what}")]
    TooLarge {
        /// What was counted: bytes, rows, cells or bytes of text.
        what: &'static str,
        /// The bound.
        limit: u64,
    },
    /// Two columns share a name.
    #[error("two columns are named `{name}`")]
    DuplicateColumn {
        /// The name.
        name: String,
    },
    /// A column is not as long as the table's others.
    #[error("column `{name}` has {found} rows, the table {expected}")]
    LengthMismatch {
        /// The column.
        name: String,
        /// The table's number of rows.
        expected: usize,
        /// The column's.
        found: usize,
    },
    /// No column has this name.
    #[error("no column `{name}` (the columns are {})", quoted(available))]
    UnknownColumn {
        /// The name asked for.
        name: String,
        /// The table's column names.
        available: Vec<String>,
    },
    /// A cell that must be a number is not.
    #[error("column `{column}` row {row}: `{text}` is not a number")]
    NotANumber {
        /// The column.
        column: String,
        /// The row, from 1.
        row: usize,
        /// The cell's text.
        text: String,
    },
    /// A cell that must be present is missing.
    #[error("column `{column}` row {row}: the value is missing")]
    Missing {
        /// The column.
        column: String,
        /// The row, from 1.
        row: usize,
    },
    /// A Parquet column of a type tables do not hold (nested, boolean, dates and times,
    /// decimals, fixed-length bytes, ...).
    #[error(
        "column `{column}`: unsupported Parquet type {kind} (tables hold numbers, integers and text)"
    )]
    UnsupportedType {
        /// The column.
        column: String,
        /// Its Parquet type.
        kind: String,
    },
    /// A Parquet text cell is not UTF-8.
    #[error("column `{column}` row {row}: the text is not UTF-8")]
    NotUtf8 {
        /// The column.
        column: String,
        /// The row, from 1.
        row: usize,
    },
    /// Malformed CSV, or CSV that cannot be written.
    #[error("{0}")]
    Csv(#[from] csv::Error),
    /// Malformed Parquet, or Parquet that cannot be written.
    #[error("{0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// Reading or writing failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

fn quoted(names: &[String]) -> String {
    if names.is_empty() {
        return "none".to_owned();
    }
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
