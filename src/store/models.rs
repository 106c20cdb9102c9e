//! The churn model's data: per-customer visit summaries to fit on, who
//! came back in a period (to judge a fit), and the fits themselves.
//!
//! Days are clinic days: `(at + offset) / 86400` with the clinic's UTC
//! offset at the cut, which for zones without daylight saving (China) is
//! the clinic calendar exactly.

use rusqlite::{OptionalExtension, params};

use super::{Result, Store};
use crate::base::clock::Timestamp;

/// One customer's visits and repeat spend up to a cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SummaryRow {
    pub customer_id: i64,
    pub first_at: Timestamp,
    pub last_at: Timestamp,
    /// Distinct clinic days with a visit.
    pub visit_days: i64,
    /// Order amounts on days after the first visit day.
    pub repeat_spend_cents: i64,
}

/// A fit to record.
#[derive(Debug, Clone)]
pub struct NewModelFit<'a> {
    pub clinic_id: i64,
    pub as_of: Timestamp,
    pub data_from: Timestamp,
    pub customers: i64,
    pub repeaters: i64,
    pub model: &'a str,
    pub fit: &'a str,
    pub created_at: Timestamp,
}

/// A recorded fit.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelFitRow {
    pub id: i64,
    pub as_of: Timestamp,
    pub data_from: Timestamp,
    pub customers: i64,
    pub repeaters: i64,
    pub model: String,
    pub fit: String,
    pub created_at: Timestamp,
}

const FIT_COLUMNS: &str =
    "id, as_of, data_from, customers, repeaters, model, fit, created_at FROM model_fits";

fn fit_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ModelFitRow> {
    Ok(ModelFitRow {
        id: r.get(0)?,
        as_of: r.get(1)?,
        data_from: r.get(2)?,
        customers: r.get(3)?,
        repeaters: r.get(4)?,
        model: r.get(5)?,
        fit: r.get(6)?,
        created_at: r.get(7)?,
    })
}

impl Store {
    /// Every customer of the clinic with a visit at or before `at`, in id
    /// order, summarised for the churn model.
    pub fn model_summaries(
        &self,
        clinic_id: i64,
        at: Timestamp,
        offset: i64,
    ) -> Result<Vec<SummaryRow>> {
        let mut stmt = self.conn.prepare(
            "WITH s AS (
                 SELECT customer_id AS id, min(at) AS first, max(at) AS last,
                        count(DISTINCT (at + ?3) / 86400) AS days
                 FROM visits WHERE at <= ?2 GROUP BY customer_id)
             SELECT s.id, s.first, s.last, s.days,
                    coalesce((SELECT sum(o.amount_cents) FROM orders o
                              WHERE o.customer_id = s.id AND o.at <= ?2
                                AND (o.at + ?3) / 86400 > (s.first + ?3) / 86400), 0)
             FROM s JOIN customers c ON c.id = s.id
             WHERE c.clinic_id = ?1 ORDER BY s.id",
        )?;
        let rows = stmt
            .query_map(params![clinic_id, at, offset], |r| {
                Ok(SummaryRow {
                    customer_id: r.get(0)?,
                    first_at: r.get(1)?,
                    last_at: r.get(2)?,
                    visit_days: r.get(3)?,
                    repeat_spend_cents: r.get(4)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// (customer, distinct clinic days with a visit) for the clinic's
    /// customers who visited in `(from, to]`, in id order.
    pub fn visit_days_between(
        &self,
        clinic_id: i64,
        from: Timestamp,
        to: Timestamp,
        offset: i64,
    ) -> Result<Vec<(i64, i64)>> {
        let mut stmt = self.conn.prepare(
            "SELECT v.customer_id, count(DISTINCT (v.at + ?4) / 86400)
             FROM visits v JOIN customers c ON c.id = v.customer_id
             WHERE c.clinic_id = ?1 AND v.at > ?2 AND v.at <= ?3
             GROUP BY v.customer_id ORDER BY v.customer_id",
        )?;
        let rows = stmt
            .query_map(params![clinic_id, from, to, offset], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// Records a fit; returns its id.
    pub fn save_model_fit(&self, fit: &NewModelFit<'_>) -> Result<i64> {
        self.conn.execute(
            "INSERT INTO model_fits (clinic_id, as_of, data_from, customers, repeaters, model, fit, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                fit.clinic_id,
                fit.as_of,
                fit.data_from,
                fit.customers,
                fit.repeaters,
                fit.model,
                fit.fit,
                fit.created_at
            ],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// The fit a tick at `at` uses: the latest whose data cut is at or
    /// before `at` (a replay of the past never sees a later fit).
    pub fn model_fit_for(&self, clinic_id: i64, at: Timestamp) -> Result<Option<ModelFitRow>> {
        Ok(self
            .conn
            .query_row(
                &format!(
                    "SELECT {FIT_COLUMNS} WHERE clinic_id = ?1 AND as_of <= ?2
                     ORDER BY as_of DESC, id DESC LIMIT 1"
                ),
                params![clinic_id, at],
                fit_row,
            )
            .optional()?)
    }

    /// A fit by id.
    pub fn model_fit(&self, id: i64) -> Result<Option<ModelFitRow>> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {FIT_COLUMNS} WHERE id = ?1"),
                params![id],
                fit_row,
            )
            .optional()?)
    }

    /// Records which fit a tick's churn facts came from.
    pub fn set_tick_model(&self, tick_id: i64, fit_id: i64) -> Result<()> {
        self.conn.execute(
            "UPDATE ticks SET model_fit_id = ?2 WHERE id = ?1",
            params![tick_id, fit_id],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ingest::NewCustomer;

    #[test]
    fn summaries_count_visit_days_and_spend_after_the_first_day() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::create(&dir.path().join("t.db")).unwrap();
        let clinic = store
            .ensure_clinic("main", "诊所", "Asia/Shanghai", 0)
            .unwrap();
        let day = 86_400;
        let mut ingest = store.ingest().unwrap();
        let id = ingest
            .add_customer(clinic, &NewCustomer::named("C1", "王丽"), 0)
            .unwrap();
        // Shanghai is UTC+8: 20:00 UTC is 04:00 the next local day.
        let offset = 8 * 3600;
        for at in [day + 3600, day + 7200, 3 * day + 3600, 5 * day + 20 * 3600] {
            ingest.add_visit(id, at, None).unwrap();
        }
        // The first day's order is not a repeat; the last is after the cut.
        for (at, cents) in [
            (day + 3600, 10_000),
            (3 * day + 3600, 20_000),
            (9 * day, 5_000),
        ] {
            ingest.add_order(id, at, cents, None, None).unwrap();
        }
        ingest.commit().unwrap();
        let rows = store.model_summaries(clinic, 8 * day, offset).unwrap();
        assert_eq!(
            rows,
            [SummaryRow {
                customer_id: id,
                first_at: day + 3600,
                last_at: 5 * day + 20 * 3600,
                visit_days: 3,
                repeat_spend_cents: 20_000,
            }]
        );
        assert_eq!(
            store
                .visit_days_between(clinic, 2 * day, 8 * day, offset)
                .unwrap(),
            [(id, 2)]
        );
        assert!(
            store
                .visit_days_between(clinic, 6 * day, 8 * day, offset)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_tick_uses_the_latest_fit_cut_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(&dir.path().join("t.db")).unwrap();
        let clinic = store
            .ensure_clinic("main", "诊所", "Asia/Shanghai", 0)
            .unwrap();
        let fit = |as_of| NewModelFit {
            clinic_id: clinic,
            as_of,
            data_from: 0,
            customers: 10,
            repeaters: 5,
            model: "{}",
            fit: "{}",
            created_at: as_of,
        };
        let first = store.save_model_fit(&fit(100)).unwrap();
        let second = store.save_model_fit(&fit(200)).unwrap();
        assert_eq!(store.model_fit_for(clinic, 50).unwrap(), None);
        assert_eq!(store.model_fit_for(clinic, 150).unwrap().unwrap().id, first);
        assert_eq!(
            store.model_fit_for(clinic, 250).unwrap().unwrap().id,
            second
        );
        assert_eq!(store.model_fit(first).unwrap().unwrap().as_of, 100);
    }
}
