//! CSV tables: a header line of column names, then one line per row.

use std::io::{self, Read, Write};

use super::{Column, ReadLimits, Table, TableError};

/// One column's cells as read, before its type is known: their text end to end, and where
/// each cell ends. Far smaller than a `String` per cell.
#[derive(Default)]
struct RawColumn {
    text: String,
    ends: Vec<usize>,
}

impl RawColumn {
    fn cells(&self) -> impl Iterator<Item = &str> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(&self.ends).map(|(s, &e)| &self.text[s..e])
    }

    /// Numbers when every present cell is one, text otherwise.
    fn into_column(self) -> Column {
        let numbers: Result<Vec<Option<f64>>, ()> = self.cells().map(parse_number).collect();
        match numbers {
            Ok(numbers) => Column::Number(numbers),
            Err(()) => Column::Text(
                self.cells()
                    .map(|c| (!is_missing(c)).then(|| c.to_owned()))
                    .collect(),
            ),
        }
    }
}

/// An empty cell (blanks only) or `NaN` in any case: a missing value, as pandas reads it.
fn is_missing(cell: &str) -> bool {
    let cell = cell.trim();
    cell.is_empty() || cell.eq_ignore_ascii_case("nan")
}

/// A cell as a number: `Ok(None)` when missing (empty or NaN), `Err` when not a number.
pub(super) fn parse_number(cell: &str) -> Result<Option<f64>, ()> {
    if is_missing(cell) {
        return Ok(None);
    }
    let x: f64 = cell.trim().parse().map_err(|_| ())?;
    Ok((!x.is_nan()).then_some(x))
}

/// A number in its shortest form that reads back exactly; exponent notation only far from 1,
/// where plain digits would run long.
pub(super) fn format_number(x: f64) -> String {
    if x == 0.0 || !x.is_finite() || (1e-5..1e16).contains(&x.abs()) {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

/// A reader that fails once more than `limit` bytes have been read, so that a stream is
/// bounded like a file whose size is known.
struct Bounded<R> {
    inner: R,
    read: u64,
    limit: u64,
}

impl<R> Bounded<R> {
    fn exceeded(&self) -> bool {
        self.read > self.limit
    }
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read = self.read.saturating_add(n as u64);
        if self.exceeded() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the table is larger than its limit",
            ));
        }
        Ok(n)
    }
}

pub(super) fn read<R: Read>(reader: R, limits: &ReadLimits) -> Result<Table, TableError> {
    let bounded = Bounded {
        inner: reader,
        read: 0,
        limit: limits.max_bytes,
    };
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(bounded);
    // The reader's own error when it stopped at the bound, the parser's otherwise.
    let fail = |csv: &csv::Reader<Bounded<R>>, error: csv::Error| {
        if csv.get_ref().exceeded() {
            TableError::TooLarge {
                what: "bytes",
                limit: limits.max_bytes,
            }
        } else {
            TableError::Csv(error)
        }
    };
    let names: Vec<String> = match csv.headers() {
        Ok(headers) => headers.iter().map(str::to_owned).collect(),
        Err(error) => return Err(fail(&csv, error)),
    };
    for (i, name) in names.iter().enumerate() {
        if names[..i].contains(name) {
            return Err(TableError::DuplicateColumn { name: name.clone() });
        }
    }
    let mut raw: Vec<RawColumn> = names.iter().map(|_| RawColumn::default()).collect();
    let mut record = csv::StringRecord::new();
    let mut rows = 0usize;
    while csv.read_record(&mut record).map_err(|e| fail(&csv, e))? {
        rows += 1;
        if rows > limits.max_rows {
            return Err(too_large("rows", limits.max_rows));
        }
        if rows.saturating_mul(names.len()) > limits.max_cells {
            return Err(too_large("cells", limits.max_cells));
        }
        // The reader is strict: every record has as many fields as the header.
        for (column, cell) in raw.iter_mut().zip(record.iter()) {
            column.text.push_str(cell);
            column.ends.push(column.text.len());
        }
    }
    Table::from_columns(
        names
            .into_iter()
            .zip(raw)
            .map(|(name, column)| (name, column.into_column()))
            .collect(),
    )
}

fn too_large(what: &'static str, limit: usize) -> TableError {
    TableError::TooLarge {
        what,
        limit: u64::try_from(limit).unwrap_or(u64::MAX),
    }
}

pub(super) fn write<W: Write>(table: &Table, writer: W) -> Result<(), TableError> {
    let mut csv = csv::Writer::from_writer(writer);
    if table.columns().is_empty() {
        return Ok(());
    }
    csv.write_record(table.columns().iter().map(|(name, _)| name.as_str()))?;
    let mut record: Vec<String> = Vec::with_capacity(table.columns().len());
    for row in 0..table.rows() {
        record.clear();
        record.extend(table.columns().iter().map(|(_, column)| {
            match column {
                Column::Number(v) => v[row]
                    .filter(|x| !x.is_nan())
                    .map(format_number)
                    .unwrap_or_default(),
                Column::Integer(v) => v[row].map(|x| x.to_string()).unwrap_or_default(),
                Column::Text(v) => v[row].clone().unwrap_or_default(),
            }
        }));
        csv.write_record(&record)?;
    }
    csv.flush()?;
    Ok(())
}
