//! `sooth keys generate` and `sooth keys show`: a miner's hotkey file and its public key.

use std::path::Path;

use anyhow::Context;
use sooth_protocol::{HotkeyScheme, read_hotkey_file, write_new_hotkey_file};

use crate::{KeysGenerateArgs, SchemeArg, outln};

impl From<SchemeArg> for HotkeyScheme {
    fn from(scheme: SchemeArg) -> Self {
        match scheme {
            SchemeArg::Ed25519 => Self::Ed25519,
            SchemeArg::Sr25519 => Self::Sr25519,
        }
    }
}

/// Writes a new hotkey file (mode 0600, never over an existing file) and prints its public
/// key as the last word.
pub fn generate(args: &KeysGenerateArgs) -> anyhow::Result<()> {
    let scheme = HotkeyScheme::from(args.scheme);
    let secret = write_new_hotkey_file(&args.out, scheme)
        .with_context(|| format!("cannot make a new {scheme} hotkey"))?;
    outln(format_args!(
        "wrote a new {scheme} hotkey to {}: keep it secret, it signs your requests to validators",
        args.out.display()
    ))?;
    outln(format_args!("hotkey: {}", secret.public()))
}

/// Prints the public key of the hotkey file `path` as the last word.
pub fn show(path: &Path) -> anyhow::Result<()> {
    let secret = read_hotkey_file(path)?;
    outln(format_args!(
        "{} hotkey in {}",
        secret.scheme(),
        path.display()
    ))?;
    outln(format_args!("hotkey: {}", secret.public()))
}
