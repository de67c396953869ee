//! Parquet tables: flat files of optional or required columns of numbers, integers and text.

use std::fs::File;
use std::io::Write;
use std::sync::Arc;

use parquet::basic::{Compression, ConvertedType, LogicalType, Repetition, Type as PhysicalType};
use parquet::column::reader::{ColumnReader, ColumnReaderImpl};
use parquet::data_type::{ByteArray, ByteArrayType, DataType, DoubleType, Int64Type};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, RowGroupReader};
use parquet::file::serialized_reader::SerializedFileReader;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::{ColumnDescriptor, Type};

use super::{Column, ReadLimits, Table, TableError};

/// Rows per row group written, as pyarrow's default (2^20): large enough for fast scans, small
/// enough that a reader need not hold a whole large table at once.
const ROW_GROUP_ROWS: usize = 1 << 20;

/// Records decoded at a time, bounding the buffers between the decoder and the columns.
const BATCH: usize = 1 << 16;

/// How a Parquet column is read into a [`Column`].
#[derive(Clone, Copy)]
enum Kind {
    Number,
    Integer,
    Text,
}

fn kind_of(column: &ColumnDescriptor) -> Result<Kind, TableError> {
    let unsupported = || TableError::UnsupportedType {
        column: column.name().to_owned(),
        kind: match column.logical_type_ref() {
            Some(logical) => format!("{} ({logical:?})", column.physical_type()),
            None => format!("{} ({})", column.physical_type(), column.converted_type()),
        },
    };
    if column.max_rep_level() > 0 || column.path().parts().len() != 1 {
        return Err(TableError::UnsupportedType {
            column: column.path().string(),
            kind: "nested or repeated".to_owned(),
        });
    }
    let logical = column.logical_type_ref();
    let converted = column.converted_type();
    match column.physical_type() {
        PhysicalType::DOUBLE | PhysicalType::FLOAT => Ok(Kind::Number),
        PhysicalType::INT32 | PhysicalType::INT64 => match logical {
            None if converted == ConvertedType::NONE => Ok(Kind::Integer),
            Some(LogicalType::Integer(int)) if int.is_signed || int.bit_width < 64 => {
                Ok(Kind::Integer)
            }
            // Dates, times, decimals and unsigned 64-bit integers would be misread as
            // plain signed integers.
            _ => Err(unsupported()),
        },
        PhysicalType::BYTE_ARRAY => match logical {
            None if matches!(
                converted,
                ConvertedType::NONE
                    | ConvertedType::UTF8
                    | ConvertedType::ENUM
                    | ConvertedType::JSON
            ) =>
            {
                Ok(Kind::Text)
            }
            Some(LogicalType::String | LogicalType::Enum | LogicalType::Json) => Ok(Kind::Text),
            _ => Err(unsupported()),
        },
        _ => Err(unsupported()),
    }
}

fn too_large(what: &'static str, limit: usize) -> TableError {
    TableError::TooLarge {
        what,
        limit: u64::try_from(limit).unwrap_or(u64::MAX),
    }
}

pub(super) fn read(file: File, limits: &ReadLimits) -> Result<Table, TableError> {
    let reader = SerializedFileReader::new(file)?;
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    let kinds: Vec<Kind> = schema
        .columns()
        .iter()
        .map(|c| kind_of(c))
        .collect::<Result<_, _>>()?;
    // Checked from the footer, before any page is decoded.
    let rows = usize::try_from(reader.metadata().file_metadata().num_rows())
        .map_err(|_| ParquetError::General("negative row count".to_owned()))?;
    if rows > limits.max_rows {
        return Err(too_large("rows", limits.max_rows));
    }
    if rows.saturating_mul(kinds.len()) > limits.max_cells {
        return Err(too_large("cells", limits.max_cells));
    }
    let mut columns: Vec<Column> = kinds
        .iter()
        .map(|kind| match kind {
            Kind::Number => Column::Number(Vec::with_capacity(rows)),
            Kind::Integer => Column::Integer(Vec::with_capacity(rows)),
            Kind::Text => Column::Text(Vec::with_capacity(rows)),
        })
        .collect();
    let mut text_left = limits.max_text_bytes;
    for g in 0..reader.num_row_groups() {
        let group = reader.get_row_group(g)?;
        let group_rows = usize::try_from(group.metadata().num_rows())
            .map_err(|_| ParquetError::General("negative row count".to_owned()))?;
        for (c, column) in columns.iter_mut().enumerate() {
            let start = column.len();
            read_column(
                group.as_ref(),
                c,
                group_rows,
                column,
                &mut text_left,
                limits,
            )?;
            if column.len() - start != group_rows {
                return Err(ParquetError::General(format!(
                    "column `{}` has {} values in row group {g}, which has {group_rows} rows",
                    schema.column(c).name(),
                    column.len() - start
                ))
                .into());
            }
        }
    }
    Table::from_columns(
        schema
            .columns()
            .iter()
            .map(|c| c.name().to_owned())
            .zip(columns)
            .collect(),
    )
}

/// Append the `rows` values of column `c` of `group` to `column`.
fn read_column(
    group: &dyn RowGroupReader,
    c: usize,
    rows: usize,
    column: &mut Column,
    text_left: &mut usize,
    limits: &ReadLimits,
) -> Result<(), TableError> {
    let descriptor = group.metadata().column(c).column_descr_ptr();
    let max_def = descriptor.max_def_level();
    let name = descriptor.name();
    match (group.get_column_reader(c)?, column) {
        (ColumnReader::DoubleColumnReader(r), Column::Number(out)) => {
            read_values(r, rows, max_def, |x| {
                out.push(x.filter(|x| !x.is_nan()));
                Ok(())
            })
        }
        (ColumnReader::FloatColumnReader(r), Column::Number(out)) => {
            read_values(r, rows, max_def, |x| {
                out.push(x.map(f64::from).filter(|x| !x.is_nan()));
                Ok(())
            })
        }
        (ColumnReader::Int64ColumnReader(r), Column::Integer(out)) => {
            read_values(r, rows, max_def, |x| {
                out.push(x);
                Ok(())
            })
        }
        (ColumnReader::Int32ColumnReader(r), Column::Integer(out)) => {
            read_values(r, rows, max_def, |x| {
                out.push(x.map(i64::from));
                Ok(())
            })
        }
        (ColumnReader::ByteArrayColumnReader(r), Column::Text(out)) => {
            read_values(r, rows, max_def, |x| {
                let text = match x {
                    None => None,
                    Some(bytes) => {
                        *text_left = text_left
                            .checked_sub(bytes.len())
                            .ok_or_else(|| too_large("bytes of text", limits.max_text_bytes))?;
                        let text =
                            std::str::from_utf8(bytes.data()).map_err(|_| TableError::NotUtf8 {
                                column: name.to_owned(),
                                row: out.len() + 1,
                            })?;
                        Some(text.to_owned())
                    }
                };
                out.push(text);
                Ok(())
            })
        }
        _ => Err(ParquetError::General(format!(
            "column `{name}`: the column reader's type is not the schema's"
        ))
        .into()),
    }
}

/// Decode up to `rows` records of a flat column, each as `Some(value)` or `None` (null), in
/// batches, handing each to `push`; stops early if the column runs out.
fn read_values<T: DataType>(
    mut reader: ColumnReaderImpl<T>,
    rows: usize,
    max_def: i16,
    mut push: impl FnMut(Option<T::T>) -> Result<(), TableError>,
) -> Result<(), TableError> {
    let mut values: Vec<T::T> = Vec::new();
    let mut levels: Vec<i16> = Vec::new();
    let mut done = 0;
    while done < rows {
        values.clear();
        levels.clear();
        let (records, _, _) = reader.read_records(
            (rows - done).min(BATCH),
            Some(&mut levels),
            None,
            &mut values,
        )?;
        if records == 0 {
            break;
        }
        done += records;
        let mut present = values.drain(..);
        if max_def == 0 {
            present.try_for_each(|v| push(Some(v)))?;
        } else {
            for &level in &levels {
                push(if level == max_def {
                    present.next()
                } else {
                    None
                })?;
            }
        }
    }
    Ok(())
}

pub(super) fn write<W: Write + Send>(table: &Table, writer: W) -> Result<(), TableError> {
    let fields = table
        .columns()
        .iter()
        .map(|(name, column)| {
            let (physical, logical) = match column {
                Column::Number(_) => (PhysicalType::DOUBLE, None),
                Column::Integer(_) => (PhysicalType::INT64, None),
                Column::Text(_) => (PhysicalType::BYTE_ARRAY, Some(LogicalType::String)),
            };
            Type::primitive_type_builder(name, physical)
                .with_repetition(Repetition::OPTIONAL)
                .with_logical_type(logical)
                .build()
                .map(Arc::new)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let schema = Arc::new(
        Type::group_type_builder("schema")
            .with_fields(fields)
            .build()?,
    );
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut file = SerializedFileWriter::new(writer, schema, Arc::new(properties))?;
    let rows = table.rows();
    for start in (0..rows).step_by(ROW_GROUP_ROWS) {
        let end = (start + ROW_GROUP_ROWS).min(rows);
        let mut group = file.next_row_group()?;
        for (name, column) in table.columns() {
            let mut writer = group
                .next_column()?
                .ok_or_else(|| ParquetError::General(format!("no column writer for `{name}`")))?;
            match column {
                Column::Number(v) => {
                    let v = &v[start..end];
                    let present = |x: &Option<f64>| x.filter(|x| !x.is_nan());
                    let values: Vec<f64> = v.iter().filter_map(present).collect();
                    let levels: Vec<i16> =
                        v.iter().map(|x| i16::from(present(x).is_some())).collect();
                    writer
                        .typed::<DoubleType>()
                        .write_batch(&values, Some(&levels), None)?;
                }
                Column::Integer(v) => {
                    let v = &v[start..end];
                    let values: Vec<i64> = v.iter().flatten().copied().collect();
                    let levels: Vec<i16> = v.iter().map(|x| i16::from(x.is_some())).collect();
                    writer
                        .typed::<Int64Type>()
                        .write_batch(&values, Some(&levels), None)?;
                }
                Column::Text(v) => {
                    let v = &v[start..end];
                    let values: Vec<ByteArray> = v
                        .iter()
                        .flatten()
                        .map(|s| ByteArray::from(s.as_bytes().to_vec()))
                        .collect();
                    let levels: Vec<i16> = v.iter().map(|x| i16::from(x.is_some())).collect();
                    writer
                        .typed::<ByteArrayType>()
                        .write_batch(&values, Some(&levels), None)?;
                }
            }
            writer.close()?;
        }
        group.close()?;
    }
    file.close()?;
    Ok(())
}
