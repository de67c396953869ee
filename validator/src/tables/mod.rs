//! Tables as files: columns of numbers and text read from and written to CSV and Parquet (the
//! downloads and `sooth ensemble`).
