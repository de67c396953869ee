//! Diagnostics kept with the run (the `log` interface).

use crate::bindings::sooth::agent::log::{Level, write};

/// Log a debug line.
pub fn debug(message: &str) {
    write(Level::Debug, message);
}

/// Log an informational line.
pub fn info(message: &str) {
    write(Level::Info, message);
}

/// Log a warning.
pub fn warn(message: &str) {
    write(Level::Warn, message);
}

/// Log an error.
pub fn error(message: &str) {
    write(Level::Error, message);
}
