//! The store shared between async tasks (the dispatcher, senders whose
//! provider is recall itself, the service): one connection behind a mutex,
//! every use on tokio's blocking pool.

use std::sync::{Arc, Mutex};

use super::{Store, StoreError};

/// A store shared between async tasks; every use goes through [`blocking`].
pub type SharedStore = Arc<Mutex<Store>>;

/// Runs a store operation on the blocking pool, so a database busy with a
/// tick never stalls the async runtime.
pub async fn blocking<T: Send + 'static>(
    store: &SharedStore,
    f: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        let mut guard = store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut guard)
    })
    .await
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))
}
