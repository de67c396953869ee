//! Tables as files: columns of numbers and text read from and written to CSV and Parquet (the
//! downloads and `sooth ensemble`).
//!
//! A [`Table`] is a list of named [`Column`]s of equal length. A missing value is `None`
//! whatever the column's type: an empty CSV cell, `NaN` (in CSV text or as a Parquet float) or
//! a Parquet null. Its rooms:
//!
//! - `error`: what can go wrong, naming the file, column and row ([`TableError`]);
//! - `csv_file`: CSV with a header line; a column whose every present cell is a number is
//!   read as numbers, any other as text;
//! - `parquet_file`: flat Parquet files (no nesting) of doubles, floats, integers and UTF-8
//!   text, written Snappy-compressed; read with any compression this build knows (none and
//!   Snappy, the pandas/pyarrow defaults).
//!
//! Reading is bounded by [`ReadLimits`] so that a large or hostile file is refused with an
//! error rather than exhausting memory.

mod csv_file;
mod error;
mod parquet_file;

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

pub use error::TableError;

/// The values of one column; `None` is a missing value.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    /// Floating-point numbers (CSV numbers, Parquet `DOUBLE` and `FLOAT`). Never `Some(NaN)`
    /// when read from a file: NaN is read as missing.
    Number(Vec<Option<f64>>),
    /// Whole numbers (Parquet `INT32` and `INT64`), kept apart from [`Column::Number`] so that
    /// they are written back as integers.
    Integer(Vec<Option<i64>>),
    /// Text.
    Text(Vec<Option<String>>),
}

impl Column {
    /// The number of values (rows).
    #[must_use]
    pub fn len(&self) -> usize {
        match self {
            Self::Number(v) => v.len(),
            Self::Integer(v) => v.len(),
            Self::Text(v) => v.len(),
        }
    }

    /// Whether the column has no rows.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of missing values.
    #[must_use]
    pub fn missing(&self) -> usize {
        match self {
            Self::Number(v) => v.iter().filter(|x| x.is_none_or(f64::is_nan)).count(),
            Self::Integer(v) => v.iter().filter(|x| x.is_none()).count(),
            Self::Text(v) => v.iter().filter(|x| x.is_none()).count(),
        }
    }
}

/// A table: named columns of equal length, in order, with distinct names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    columns: Vec<(String, Column)>,
}

/// The file formats of tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated values with a header line (`.csv`).
    Csv,
    /// Apache Parquet (`.parquet`).
    Parquet,
}

impl Format {
    /// The format named by `path`'s extension, `.csv` or `.parquet` (in any case).
    ///
    /// # Errors
    ///
    /// [`TableError::UnknownFormat`] for any other extension or none.
    pub fn from_path(path: &Path) -> Result<Self, TableError> {
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match extension.as_deref() {
            Some("csv") => Ok(Self::Csv),
            Some("parquet") => Ok(Self::Parquet),
            _ => Err(TableError::UnknownFormat {
                path: path.display().to_string(),
            }),
        }
    }
}

/// Bounds on what reading a table may take, checked before or while reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// The largest file, in bytes.
    pub max_bytes: u64,
    /// The most rows.
    pub max_rows: usize,
    /// The most cells, rows times columns.
    pub max_cells: usize,
    /// The most bytes of text over all text cells, as decoded (a Parquet dictionary can
    /// repeat one long string in every row of a small file).
    pub max_text_bytes: usize,
}

impl ReadLimits {
    /// The default bounds: files up to 1 GiB, 10 million rows, 100 million cells (about
    /// 1.6 GB of numbers) and 1 GiB of text.
    pub const DEFAULT: Self = Self {
        max_bytes: 1 << 30,
        max_rows: 10_000_000,
        max_cells: 100_000_000,
        max_text_bytes: 1 << 30,
    };
}

impl Default for ReadLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl Table {
    /// A table of no columns.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A table of `columns`, in order.
    ///
    /// # Errors
    ///
    /// [`TableError::DuplicateColumn`] when two columns share a name;
    /// [`TableError::LengthMismatch`] when a column is not as long as the first.
    pub fn from_columns(columns: Vec<(String, Column)>) -> Result<Self, TableError> {
        let mut table = Self::new();
        for (name, column) in columns {
            table.push_column(name, column)?;
        }
        Ok(table)
    }

    /// Add `column` after the others, under `name`.
    ///
    /// # Errors
    ///
    /// [`TableError::DuplicateColumn`] when the table already has a column `name`;
    /// [`TableError::LengthMismatch`] when the column is not as long as the table's columns.
    pub fn push_column(
        &mut self,
        name: impl Into<String>,
        column: Column,
    ) -> Result<(), TableError> {
        let name = name.into();
        if self.column(&name).is_some() {
            return Err(TableError::DuplicateColumn { name });
        }
        if let Some((_, first)) = self.columns.first()
            && first.len() != column.len()
        {
            return Err(TableError::LengthMismatch {
                name,
                expected: first.len(),
                found: column.len(),
            });
        }
        self.columns.push((name, column));
        Ok(())
    }

    /// The number of rows (zero for a table of no columns).
    #[must_use]
    pub fn rows(&self) -> usize {
        self.columns.first().map_or(0, |(_, c)| c.len())
    }

    /// The columns with their names, in order.
    #[must_use]
    pub fn columns(&self) -> &[(String, Column)] {
        &self.columns
    }

    /// The column named `name`, if any.
    #[must_use]
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|(n, _)| n == name).map(|(_, c)| c)
    }

    /// The column named `name`.
    ///
    /// # Errors
    ///
    /// [`TableError::UnknownColumn`] when there is none.
    pub fn require(&self, name: &str) -> Result<&Column, TableError> {
        self.column(name).ok_or_else(|| TableError::UnknownColumn {
            name: name.to_owned(),
            available: self.columns.iter().map(|(n, _)| n.clone()).collect(),
        })
    }

    /// The column named `name` as numbers: integers converted, text parsed (an empty cell or
    /// `NaN` is missing). NaN is read as missing.
    ///
    /// # Errors
    ///
    /// [`TableError::UnknownColumn`] when there is no such column;
    /// [`TableError::NotANumber`] naming the first text cell that is not a number.
    pub fn numbers(&self, name: &str) -> Result<Vec<Option<f64>>, TableError> {
        Ok(match self.require(name)? {
            Column::Number(v) => v.iter().map(|x| x.filter(|x| !x.is_nan())).collect(),
            Column::Integer(v) => v.iter().map(|x| x.map(|x| x as f64)).collect(),
            Column::Text(v) => v
                .iter()
                .enumerate()
                .map(|(row, cell)| match cell {
                    None => Ok(None),
                    Some(text) => {
                        csv_file::parse_number(text).map_err(|()| TableError::NotANumber {
                            column: name.to_owned(),
                            row: row + 1,
                            text: text.clone(),
                        })
                    }
                })
                .collect::<Result<_, _>>()?,
        })
    }

    /// The column named `name` as text keys, for grouping rows (an era may be named by text
    /// or by a number): numbers are written as in CSV (`3`, not `3.0`).
    ///
    /// # Errors
    ///
    /// [`TableError::UnknownColumn`] when there is no such column.
    pub fn keys(&self, name: &str) -> Result<Vec<Option<String>>, TableError> {
        Ok(match self.require(name)? {
            Column::Number(v) => v
                .iter()
                .map(|x| x.filter(|x| !x.is_nan()).map(csv_file::format_number))
                .collect(),
            Column::Integer(v) => v.iter().map(|x| x.map(|x| x.to_string())).collect(),
            Column::Text(v) => v.clone(),
        })
    }

    /// Read the table in the file `path`, in the format its extension names
    /// ([`Format::from_path`]), within [`ReadLimits::DEFAULT`].
    ///
    /// # Errors
    ///
    /// [`TableError::UnknownFormat`] for an unknown extension; otherwise [`TableError::File`]
    /// wrapping what went wrong: a file that cannot be read or is beyond the limits, or a
    /// malformed table.
    pub fn read(path: &Path) -> Result<Self, TableError> {
        Self::read_with_limits(path, &ReadLimits::DEFAULT)
    }

    /// [`Table::read`] within `limits`.
    ///
    /// # Errors
    ///
    /// As [`Table::read`].
    pub fn read_with_limits(path: &Path, limits: &ReadLimits) -> Result<Self, TableError> {
        let format = Format::from_path(path)?;
        Self::read_file(path, format, limits).map_err(|error| TableError::File {
            path: path.display().to_string(),
            error: Box::new(error),
        })
    }

    fn read_file(path: &Path, format: Format, limits: &ReadLimits) -> Result<Self, TableError> {
        let file = File::open(path)?;
        let size = file.metadata()?.len();
        if size > limits.max_bytes {
            return Err(TableError::TooLarge {
                what: "bytes",
                limit: limits.max_bytes,
            });
        }
        match format {
            Format::Csv => Self::read_csv(file, limits),
            Format::Parquet => parquet_file::read(file, limits),
        }
    }

    /// Read a CSV table (a header line of column names, then one line per row) from
    /// `reader`, within `limits`.
    ///
    /// # Errors
    ///
    /// [`TableError::TooLarge`] beyond `limits`; [`TableError::Csv`] for malformed CSV or a
    /// line with the wrong number of cells; [`TableError::DuplicateColumn`];
    /// [`TableError::Io`] when reading fails.
    pub fn read_csv<R: Read>(reader: R, limits: &ReadLimits) -> Result<Self, TableError> {
        csv_file::read(reader, limits)
    }

    /// Write the table as CSV (a header line, numbers in their shortest exact form, missing
    /// values as empty cells) to `writer`.
    ///
    /// # Errors
    ///
    /// [`TableError::Io`] or [`TableError::Csv`] when writing fails.
    pub fn write_csv<W: Write>(&self, writer: W) -> Result<(), TableError> {
        csv_file::write(self, writer)
    }

    /// Write the table as Snappy-compressed Parquet to `writer`: numbers as optional
    /// `DOUBLE`, integers as optional `INT64`, text as optional UTF-8 `BYTE_ARRAY`.
    ///
    /// # Errors
    ///
    /// [`TableError::Parquet`] or [`TableError::Io`] when writing fails.
    pub fn write_parquet<W: Write + Send>(&self, writer: W) -> Result<(), TableError> {
        parquet_file::write(self, writer)
    }

    /// Write the table in `format` to `writer`.
    ///
    /// # Errors
    ///
    /// As [`Table::write_csv`] and [`Table::write_parquet`].
    pub fn write<W: Write + Send>(&self, format: Format, writer: W) -> Result<(), TableError> {
        match format {
            Format::Csv => self.write_csv(writer),
            Format::Parquet => self.write_parquet(writer),
        }
    }
}
