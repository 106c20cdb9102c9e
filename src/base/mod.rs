//! Layer 0: the leaves every other layer stands on. Nothing here imports
//! from outside `base` (but `predict`, the other leaf): the vocabulary of
//! pools, channels and statuses (`model`), what a message says (`content`), what providers report back (`delivery`),
//! time (`clock`), how big the clinic's files may be (`limits`), the user's language
//! and every sentence said to them (`i18n`), diagnostics (`diag`), output
//! formats (`output`), masking of personal data (`mask`), phone numbers as
//! people type them (`phone`), why a message was not sent as the
//! database keeps it (`reason`), redaction of secrets from provider text
//! (`redact`) and the process's counters (`metrics`), and who may write the clinic's files
//! (`perm`).

pub mod clock;
pub mod content;
pub mod delivery;
pub mod diag;
pub mod i18n;
pub mod limits;
pub mod mask;
pub mod metrics;
pub mod model;
pub mod output;
pub mod perm;
pub mod phone;
pub mod reason;
pub mod redact;
