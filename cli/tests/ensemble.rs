//! `sooth ensemble` as a user runs it: CSV and Parquet in and out, checked against values
//! computed independently with scipy and numpy, and bad inputs refused with a clear error and
//! no output file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../../validator/tests/common/ensemble_reference.rs"]
mod ensemble_reference;

use std::path::{Path, PathBuf};

use common::{Output, run, sooth};
use ensemble_reference::{INPUT_CSV, NEUTRAL, PLAIN, assert_close};
use sooth_validator::tables::{ReadLimits, Table};

/// The table above written by pyarrow (26.0, Snappy, dictionary-encoded text, `id` int64):
///
///   pd.read_csv("input.csv").to_parquet("ensemble_input.parquet", index=False)
///
/// Checked by hand once the other way: a file `sooth ensemble` wrote, read by
/// `pyarrow.parquet.read_table`, gave the ensemble column of PLAIN (NaN where missing) and
/// the input's columns unchanged.
fn pyarrow_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ensemble_input.parquet")
}

/// A temporary directory holding `input.csv`.
fn input_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("input.csv");
    std::fs::write(&path, INPUT_CSV).unwrap();
    (dir, path)
}

/// `sooth ensemble --predictions INPUT --out OUT` and `extra`.
fn ensemble(input: &Path, out: &Path, extra: &[&str]) -> Output {
    run(sooth()
        .arg("ensemble")
        .arg("--predictions")
        .arg(input)
        .arg("--out")
        .arg(out)
        .args(extra))
}

/// The files in `dir`, sorted: nothing else is left behind.
fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn csv_in_csv_out_matches_scipy_and_keeps_the_input_columns() {
    let (dir, input) = input_dir();
    let out = dir.path().join("out.csv");
    let output = ensemble(&input, &out, &["--models", "a,b", "--weights", "1,2"]).ok();
    assert_eq!(
        output.stdout.trim(),
        format!("wrote {}: 16 rows, 2 eras, 3 missing", out.display())
    );
    let table = Table::read(&out).unwrap();
    let names: Vec<&str> = table.columns().iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["id", "era", "a", "b", "f1", "f2", "ensemble"]);
    let before = Table::read(&input).unwrap();
    for (name, _) in before.columns() {
        assert_eq!(
            table.keys(name).unwrap(),
            before.keys(name).unwrap(),
            "{name}"
        );
    }
    assert_close(&table.numbers("ensemble").unwrap(), &PLAIN);
    assert_eq!(files(dir.path()), ["input.csv", "out.csv"]);
}

#[test]
fn neutralized_into_a_named_column_matches_numpy_lstsq() {
    let (dir, input) = input_dir();
    let out = dir.path().join("out.parquet");
    let output = ensemble(
        &input,
        &out,
        &[
            "--models",
            "a,b",
            "--weights",
            "1,2",
            "--neutralize",
            "f1,f2",
            "--column",
            "meta",
        ],
    )
    .ok();
    assert!(
        output.stdout.contains("16 rows, 2 eras, 4 missing"),
        "{}",
        output.stdout
    );
    let table = Table::read(&out).unwrap();
    assert_close(&table.numbers("meta").unwrap(), &NEUTRAL);
}

#[test]
fn pyarrow_parquet_in_gives_what_csv_in_gives() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.parquet");
    ensemble(
        &pyarrow_fixture(),
        &out,
        &["--models", "a,b", "--weights", "1,2"],
    )
    .ok();
    let table = Table::read(&out).unwrap();
    assert_close(&table.numbers("ensemble").unwrap(), &PLAIN);
    // The input's columns are carried over, integers still integers.
    let input = Table::read(&pyarrow_fixture()).unwrap();
    for (name, column) in input.columns() {
        assert_eq!(table.column(name), Some(column), "{name}");
    }

    // Parquet out, read by our reader, and CSV out agree.
    let csv_out = dir.path().join("out.csv");
    ensemble(
        &out,
        &csv_out,
        &["--models", "a,b", "--weights", "1,2", "--column", "again"],
    )
    .ok();
    let again = Table::read_csv(
        std::fs::read(&csv_out).unwrap().as_slice(),
        &ReadLimits::DEFAULT,
    )
    .unwrap();
    assert_close(&again.numbers("again").unwrap(), &PLAIN);
    assert_close(&again.numbers("ensemble").unwrap(), &PLAIN);
}

#[test]
fn negative_weights_are_accepted() {
    // Ranks of negated values are mirrored, and the inverse normal CDF is odd: the ensemble
    // of weights -1,-2 is the negation of that of 1,2.
    let (dir, input) = input_dir();
    let out = dir.path().join("out.csv");
    ensemble(&input, &out, &["--models", "a,b", "--weights", "-1,-2"]).ok();
    let negated: Vec<Option<f64>> = PLAIN.iter().map(|v| v.map(|x| -x)).collect();
    assert_close(
        &Table::read(&out).unwrap().numbers("ensemble").unwrap(),
        &negated,
    );
}

#[test]
fn a_numeric_era_column_under_another_name() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.csv");
    let csv = INPUT_CSV
        .replacen("era", "day", 1)
        .replace(",e1,", ",20240101,")
        .replace(",e2,", ",20240102,");
    std::fs::write(&input, csv).unwrap();
    let out = dir.path().join("out.csv");
    ensemble(
        &input,
        &out,
        &["--models", "a,b", "--weights", "1,2", "--era", "day"],
    )
    .ok();
    assert_close(
        &Table::read(&out).unwrap().numbers("ensemble").unwrap(),
        &PLAIN,
    );
}

#[test]
fn bad_inputs_are_refused_clearly_and_write_nothing() {
    let (dir, input) = input_dir();
    let out = dir.path().join("out.csv");
    let cases: [(&[&str], &str); 4] = [
        (
            &["--models", "a,zz", "--weights", "1,2"],
            "no column `zz` (the columns are `id`, `era`, `a`, `b`, `f1`, `f2`)",
        ),
        (
            &["--models", "a,b", "--weights", "1"],
            "2 models but 1 weights: give one weight per model",
        ),
        (
            &["--models", "a,b", "--weights", "1,2", "--neutralize", "f3"],
            "no column `f3`",
        ),
        (
            &["--models", "a", "--column", "b"],
            "cannot add the column `b`",
        ),
    ];
    for (args, message) in cases {
        ensemble(&input, &out, args).fails_with(message);
        assert_eq!(files(dir.path()), ["input.csv"], "{args:?}");
    }

    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, INPUT_CSV.replace("3,e1,0.2,", "3,e1,abc,")).unwrap();
    ensemble(&bad, &out, &["--models", "a,b"])
        .fails_with("column `a` row 3: `abc` is not a number");
    assert!(!out.exists());

    let unknown = dir.path().join("out.xlsx");
    ensemble(&input, &unknown, &["--models", "a,b"])
        .fails_with("out.xlsx: unknown table format: the file name must end in .csv or .parquet");
    let text = dir.path().join("input.txt");
    std::fs::write(&text, INPUT_CSV).unwrap();
    ensemble(&text, &out, &["--models", "a,b"]).fails_with("input.txt: unknown table format");
    assert_eq!(files(dir.path()), ["bad.csv", "input.csv", "input.txt"]);
}

#[test]
fn an_existing_output_is_kept_unless_forced() {
    let (dir, input) = input_dir();
    let out = dir.path().join("out.csv");
    std::fs::write(&out, "precious").unwrap();
    ensemble(&input, &out, &["--models", "a,b", "--weights", "1,2"])
        .fails_with("exists; pass --force to replace it");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "precious");

    ensemble(
        &input,
        &out,
        &["--models", "a,b", "--weights", "1,2", "--force"],
    )
    .ok();
    assert_close(
        &Table::read(&out).unwrap().numbers("ensemble").unwrap(),
        &PLAIN,
    );
    assert_eq!(files(dir.path()), ["input.csv", "out.csv"]);
}
