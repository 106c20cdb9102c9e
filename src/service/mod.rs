//! Layer 6: `recall run`, the service. The scheduler and the dispatch loop
//! (`daemon`), hot reload (`reload`), health and metrics over HTTP
//! (`observe`), and the operations it runs unattended (`ops`: backups,
//! retention, forgetting a customer).

pub mod daemon;
pub mod observe;
pub mod ops;
pub mod reload;

use crate::base::i18n::{Text, lang};

/// A sentence for the log or an error, in the process's language.
pub(crate) fn say(text: Text) -> String {
    text.render(lang())
}
