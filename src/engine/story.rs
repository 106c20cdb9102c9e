//! One customer's story at a time: what the store holds about them
//! ([`crate::store::story::Story`]) and their facts as a tick at that time
//! judges them — derived by [`Facts::derive_in`] from the record the tick's
//! own scan steps build, with the churn model that tick loads. `recall
//! customer` and the web console show this; neither derives facts itself.

use std::sync::Arc;

use crate::base::clock::Timestamp;
use crate::base::model::Pool;
use crate::churn::ChurnModel;
use crate::config::Clinic;
use crate::facts::{FactContext, Facts};
use crate::store::Store;
use crate::store::story::Story;

use super::{EngineError, scan_options};

/// A customer's story as of one time.
#[derive(Debug)]
pub struct CustomerStory {
    pub story: Story,
    /// The time the story is told at (`--at`, else now).
    pub at: Timestamp,
    /// The pool after everything at or before `at`, and since when.
    pub pool: Option<(Pool, Timestamp)>,
    /// The facts a tick at `at` judges; `None` if the customer was not in
    /// a pool yet.
    pub facts: Option<Facts>,
    /// The churn model's fit behind the churn facts, if one precedes `at`.
    pub model: Option<Arc<ChurnModel>>,
}

/// The story of customer `customer_id` (the store's id) at `at`; `None` if
/// there is no such customer.
pub fn customer_story(
    store: &Store,
    clinic: &Clinic,
    clinic_id: i64,
    customer_id: i64,
    at: Timestamp,
) -> Result<Option<CustomerStory>, EngineError> {
    let Some(story) = store.story(customer_id)? else {
        return Ok(None);
    };
    // As a tick at `at` does: the fit it loads, the scan it runs.
    let model = crate::churn::load(store, clinic_id, at, &clinic.scoring)?;
    let context = FactContext {
        tz: clinic.timezone,
        cycles: &clinic.cycles,
        model: model.as_ref(),
    };
    let options = scan_options(clinic, model.is_some(), at);
    let facts = story
        .record_at(at, options)
        .map(|record| Facts::derive_in(&record, at, &context));
    Ok(Some(CustomerStory {
        pool: story.pool_after(at),
        story,
        at,
        facts,
        model,
    }))
}
