//! Rebuilds the validator when a migration is added (sqlx::migrate! embeds them).

fn main() {
    // sqlx::migrate! embeds the migrations; a new file must rebuild the crate.
    println!("cargo:rerun-if-changed=../migrations/sqlite");
}
