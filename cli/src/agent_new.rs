//! `sooth agent new`: scaffold a buildable agent project.
//!
//! A Rust project is a standalone cargo package with a vendored copy of the
//! SDK (`sooth/sdk`) and the WIT contract (`sooth/wit/sooth.wit`, where the
//! SDK's bindings expect it); a Python project holds `app.py`, the SDK
//! helper `sooth_sdk.py` and `wit/sooth.wit`.

use std::path::Path;

use anyhow::{Context, bail};

use crate::{Lang, NewArgs, outln};

/// The Rust SDK's sources, as `sooth/sdk/src/<name>`.
const SDK_SOURCES: [(&str, &str); 5] = [
    ("lib.rs", include_str!("../../sdk/src/lib.rs")),
    ("gateway.rs", include_str!("../../sdk/src/gateway.rs")),
    ("log.rs", include_str!("../../sdk/src/log.rs")),
    ("metadata.rs", include_str!("../../sdk/src/metadata.rs")),
    (
        "probability.rs",
        include_str!("../../sdk/src/probability.rs"),
    ),
];

/// The Python SDK helper.
pub const PYTHON_SDK: &str = include_str!("../../sdk/python/sooth_sdk.py");

/// The toolchain the project's own agents are built with.
const RUST_TOOLCHAIN: &str = include_str!("../../rust-toolchain.toml");

const EVENTS: &str = include_str!("../templates/events.jsonl");

fn rust_files(name: &str) -> Vec<(String, String)> {
    let fill = |template: &str| template.replace("{{name}}", name);
    let mut files = vec![
        (
            "Cargo.toml".to_owned(),
            fill(include_str!("../templates/rust/Cargo.toml.in")),
        ),
        (
            "src/lib.rs".to_owned(),
            fill(include_str!("../templates/rust/lib.rs")),
        ),
        (
            "README.md".to_owned(),
            fill(include_str!("../templates/rust/README.md")),
        ),
        (
            ".gitignore".to_owned(),
            include_str!("../templates/rust/gitignore").to_owned(),
        ),
        ("rust-toolchain.toml".to_owned(), RUST_TOOLCHAIN.to_owned()),
        ("events.jsonl".to_owned(), EVENTS.to_owned()),
        (
            "sooth/sdk/Cargo.toml".to_owned(),
            include_str!("../templates/rust/sdk-Cargo.toml.in").to_owned(),
        ),
        (
            format!("sooth/wit/{}", sooth_wit::FILE_NAME),
            sooth_wit::WIT_SOURCE.to_owned(),
        ),
    ];
    files.extend(
        SDK_SOURCES
            .iter()
            .map(|(file, text)| (format!("sooth/sdk/src/{file}"), (*text).to_owned())),
    );
    files
}

fn python_files(name: &str) -> Vec<(String, String)> {
    let fill = |template: &str| template.replace("{{name}}", name);
    vec![
        (
            "app.py".to_owned(),
            fill(include_str!("../templates/python/app.py")),
        ),
        ("sooth_sdk.py".to_owned(), PYTHON_SDK.to_owned()),
        (
            format!("wit/{}", sooth_wit::FILE_NAME),
            sooth_wit::WIT_SOURCE.to_owned(),
        ),
        (
            "README.md".to_owned(),
            fill(include_str!("../templates/python/README.md")),
        ),
        (
            ".gitignore".to_owned(),
            include_str!("../templates/python/gitignore").to_owned(),
        ),
        ("events.jsonl".to_owned(), EVENTS.to_owned()),
    ]
}

/// Whether `name` can name both a directory and a cargo package.
fn check_name(name: &str) -> anyhow::Result<()> {
    let mut chars = name.chars();
    let starts_with_letter = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    if !starts_with_letter
        || name.len() > 64
        || !chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!(
            "invalid agent name {name:?}: use 1 to 64 ASCII letters, digits, `-` and `_`, starting with a letter"
        );
    }
    Ok(())
}

/// Create `PARENT/NAME` and write the project into it.
pub fn run(args: &NewArgs) -> anyhow::Result<()> {
    check_name(&args.name)?;
    let root = args.dir.join(&args.name);
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    match std::fs::create_dir(&root) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            bail!(
                "{} already exists; choose another name or --dir",
                root.display()
            )
        }
        Err(error) => {
            return Err(error).with_context(|| format!("cannot create {}", root.display()));
        }
    }
    let files = match args.lang {
        Lang::Rust => rust_files(&args.name),
        Lang::Python => python_files(&args.name),
    };
    write_files(&root, &files)?;
    let lang = match args.lang {
        Lang::Rust => "Rust",
        Lang::Python => "Python",
    };
    outln(format_args!(
        "created {lang} agent {} in {}",
        args.name,
        root.display()
    ))?;
    outln("next:")?;
    outln(format_args!("    sooth agent build {}", root.display()))?;
    outln(format_args!(
        "    sooth agent test {} --events {}",
        root.join("agent.wasm").display(),
        root.join("events.jsonl").display()
    ))?;
    Ok(())
}

fn write_files(root: &Path, files: &[(String, String)]) -> anyhow::Result<()> {
    for (relative, text) in files {
        let path = root.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn embeds_every_sdk_source() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk/src");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".rs"))
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = SDK_SOURCES
            .iter()
            .map(|(name, _)| (*name).to_owned())
            .collect();
        embedded.sort();
        assert_eq!(
            embedded, on_disk,
            "update SDK_SOURCES when the SDK gains or loses a file"
        );
    }

    #[test]
    fn the_vendored_sdk_finds_the_wit_where_the_sdk_expects_it() {
        let lib = SDK_SOURCES[0].1;
        assert!(lib.contains("path: \"../wit/sooth.wit\""));
        assert!(
            rust_files("a")
                .iter()
                .any(|(path, _)| path == "sooth/wit/sooth.wit")
        );
    }

    #[test]
    fn checks_names() {
        for good in ["a", "my-agent", "Agent_2"] {
            check_name(good).unwrap();
        }
        for bad in ["", "2a", "-a", "a b", "a/b", "../a", "é"] {
            assert!(check_name(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn templates_are_filled() {
        for (path, text) in rust_files("zed").into_iter().chain(python_files("zed")) {
            assert!(!text.contains("{{name}}"), "{path} still has a placeholder");
        }
    }

    #[test]
    fn refuses_an_existing_directory() {
        let parent = tempfile::tempdir().unwrap();
        let args = NewArgs {
            name: "a".into(),
            lang: Lang::Python,
            dir: parent.path().to_path_buf(),
        };
        run(&args).unwrap();
        let error = run(&args).unwrap_err().to_string();
        assert!(error.contains("already exists"), "{error}");
    }
}
