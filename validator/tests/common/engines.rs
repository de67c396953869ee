//! The two store engines for the tests that hold on either: SQLite in memory, and PostgreSQL
//! in a schema of the test's own on the machine's server.

use sooth_test_postgres::TestSchema;
use sooth_validator::store::{Store, StoreOptions};

pub use sooth_validator::store::Engine;

/// A store on one engine, and the PostgreSQL schema it lives in (dropped with it).
pub struct TestStore {
    pub store: Store,
    _schema: Option<TestSchema>,
}

impl std::ops::Deref for TestStore {
    type Target = Store;

    fn deref(&self) -> &Store {
        &self.store
    }
}

/// An empty store on `engine`.
pub async fn empty_store(engine: Engine) -> TestStore {
    match engine {
        Engine::Sqlite => TestStore {
            store: Store::in_memory().await.unwrap(),
            _schema: None,
        },
        Engine::Postgres => {
            let schema = TestSchema::create().await;
            let store = Store::connect(schema.url(), &StoreOptions::default())
                .await
                .unwrap();
            TestStore {
                store,
                _schema: Some(schema),
            }
        }
    }
}

/// Runs each named `async fn NAME(engine: Engine)` on both engines: `sqlite::NAME` and
/// `postgres::NAME`.
#[macro_export]
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::common::engines::Engine::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::common::engines::Engine::Postgres).await;
                }
            )*
        }
    };
}
