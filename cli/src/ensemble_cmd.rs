//! `sooth ensemble`: the benchmark models' rank-gauss ensemble of a table of predictions,
//! written beside them.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use sooth_validator::meta::ensemble_table;
use sooth_validator::tables::{Column, Format, Table};

use crate::outln;

/// Arguments of `sooth ensemble`.
#[derive(Debug, Args)]
pub struct EnsembleArgs {
    /// The predictions: a table (`.csv` or `.parquet`) with an era column and one column per
    /// model.
    #[arg(long, value_name = "FILE")]
    pub predictions: PathBuf,
    /// The model columns to ensemble, comma-separated.
    #[arg(long, value_name = "A,B", value_delimiter = ',', required = true)]
    pub models: Vec<String>,
    /// One weight per model, comma-separated [default: 1 each].
    #[arg(
        long,
        value_name = "W1,W2",
        value_delimiter = ',',
        allow_hyphen_values = true
    )]
    pub weights: Vec<f64>,
    /// Columns to neutralize the ensemble against (their least-squares fit is subtracted per
    /// era), comma-separated.
    #[arg(long, value_name = "COLS", value_delimiter = ',')]
    pub neutralize: Vec<String>,
    /// The column naming each row's era.
    #[arg(long, value_name = "COLUMN", default_value = "era")]
    pub era: String,
    /// The name of the ensemble's column in the output.
    #[arg(long, value_name = "NAME", default_value = "ensemble")]
    pub column: String,
    /// Where to write the predictions with the ensemble column added, in the format of its
    /// extension (`.csv` or `.parquet`).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Replace the output file if it exists.
    #[arg(long)]
    pub force: bool,
}

/// Run `sooth ensemble` as `args` says.
///
/// # Errors
///
/// When the output exists (without `--force`) or its format is unknown, when the predictions
/// cannot be read or ensembled, or when the output cannot be written.
pub fn run(args: &EnsembleArgs) -> anyhow::Result<()> {
    // Checked before the work, so that a mistake costs nothing.
    let format = Format::from_path(&args.out)?;
    if !args.force && args.out.exists() {
        bail!("{} exists; pass --force to replace it", args.out.display());
    }
    let mut table = Table::read(&args.predictions)?;
    let models: Vec<&str> = args.models.iter().map(String::as_str).collect();
    let weights = if args.weights.is_empty() {
        vec![1.0; models.len()]
    } else {
        args.weights.clone()
    };
    let neutralize: Vec<&str> = args.neutralize.iter().map(String::as_str).collect();
    let ensemble = ensemble_table(&table, &models, &weights, &args.era, &neutralize)
        .with_context(|| format!("cannot ensemble {}", args.predictions.display()))?;
    let (eras, missing) = (ensemble.eras, ensemble.missing());
    table
        .push_column(&args.column, Column::Number(ensemble.values))
        .with_context(|| {
            format!(
                "cannot add the column `{}`; choose another name with --column",
                args.column
            )
        })?;
    write_atomically(&table, format, &args.out, args.force)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    outln(format_args!(
        "wrote {}: {} rows, {eras} eras, {missing} missing",
        args.out.display(),
        table.rows()
    ))
}

/// Write `table` to a temporary file beside `out`, then rename it to `out`, so that `out` is
/// never seen half-written; the temporary file is removed on any error.
fn write_atomically(table: &Table, format: Format, out: &Path, force: bool) -> anyhow::Result<()> {
    let dir = match out.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut file = tempfile::Builder::new()
        .prefix(".sooth-ensemble-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    {
        let mut writer = BufWriter::new(file.as_file_mut());
        table.write(format, &mut writer)?;
        writer.flush()?;
    }
    file.as_file().sync_all()?;
    if force {
        file.persist(out).map_err(|e| e.error)?;
    } else {
        // Another process may have created `out` since the check above.
        file.persist_noclobber(out).map_err(|e| e.error)?;
    }
    Ok(())
}
