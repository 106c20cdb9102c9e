//! Writing imported CRM/HIS rows: upserts by the clinic's own ids (a visit,
//! order or follow-up is the clinic's row `external_id`, whichever customer
//! it is filed under), all in one transaction. Rows that point at customers the database does not know
//! make the whole import fail with their lines, and nothing is written.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, Transaction, params};

use super::Store;
use crate::clock::Timestamp;
use crate::import::{CustomerIn, RowError, Rows};
use crate::model::{Gender, Pool};

/// What an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportCounts {
    pub inserted: usize,
    pub updated: usize,
    pub unchanged: usize,
}

/// Why an import wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{} row(s) point at unknown customers", .0.len())]
    Rows(Vec<RowError>),
    #[error(transparent)]
    Store(#[from] super::StoreError),
}

impl From<rusqlite::Error> for ImportError {
    fn from(e: rusqlite::Error) -> Self {
        ImportError::Store(e.into())
    }
}

impl Store {
    /// Upserts parsed rows for a clinic in one transaction: all or nothing.
    pub fn import(
        &mut self,
        clinic_id: i64,
        rows: &Rows,
        now: Timestamp,
    ) -> std::result::Result<ImportCounts, ImportError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let counts = match rows {
            Rows::Customers(rows) => customers(&tx, clinic_id, rows, now)?,
            Rows::Visits(rows) => {
                let ids = customer_ids(
                    &tx,
                    clinic_id,
                    rows.iter().map(|r| (r.line, r.customer.as_str())),
                )?;
                let mut counts = ImportCounts::default();
                for r in rows {
                    let changed = upsert(
                        &tx,
                        "visits",
                        &["at", "department", "note"],
                        (clinic_id, ids[&r.line], &r.external_id),
                        params![r.at, r.department, r.note],
                    )?;
                    counts.add(changed);
                }
                counts
            }
            Rows::Orders(rows) => {
                let ids = customer_ids(
                    &tx,
                    clinic_id,
                    rows.iter().map(|r| (r.line, r.customer.as_str())),
                )?;
                let mut counts = ImportCounts::default();
                for r in rows {
                    let changed = upsert(
                        &tx,
                        "orders",
                        &["at", "amount_cents", "project", "department"],
                        (clinic_id, ids[&r.line], &r.external_id),
                        params![r.at, r.amount_cents, r.project, r.department],
                    )?;
                    counts.add(changed);
                }
                counts
            }
            Rows::Followups(rows) => {
                let ids = customer_ids(
                    &tx,
                    clinic_id,
                    rows.iter().map(|r| (r.line, r.customer.as_str())),
                )?;
                let mut counts = ImportCounts::default();
                for r in rows {
                    let changed = upsert(
                        &tx,
                        "followups",
                        &["at", "result", "staff", "note"],
                        (clinic_id, ids[&r.line], &r.external_id),
                        params![r.at, r.result.as_str(), r.staff, r.note],
                    )?;
                    counts.add(changed);
                }
                counts
            }
        };
        tx.commit()?;
        Ok(counts)
    }
}

/// What one upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Inserted,
    Updated,
    Unchanged,
}

impl ImportCounts {
    fn add(&mut self, change: Change) {
        match change {
            Change::Inserted => self.inserted += 1,
            Change::Updated => self.updated += 1,
            Change::Unchanged => self.unchanged += 1,
        }
    }
}

/// The database id of each row's customer; unknown customers are errors.
fn customer_ids<'a>(
    tx: &Transaction<'_>,
    clinic_id: i64,
    rows: impl Iterator<Item = (usize, &'a str)>,
) -> std::result::Result<HashMap<usize, i64>, ImportError> {
    let mut stmt =
        tx.prepare_cached("SELECT id FROM customers WHERE clinic_id = ?1 AND external_id = ?2")?;
    let mut ids = HashMap::new();
    let mut errors = Vec::new();
    for (line, customer) in rows {
        match stmt
            .query_row(params![clinic_id, customer], |r| r.get::<_, i64>(0))
            .optional()?
        {
            Some(id) => {
                ids.insert(line, id);
            }
            None => errors.push(RowError {
                line,
                message: format!(
                    "unknown customer `{customer}`: import customers.csv first, or check the id"
                ),
            }),
        }
    }
    if errors.is_empty() {
        Ok(ids)
    } else {
        Err(ImportError::Rows(errors))
    }
}

/// Inserts or updates one history row keyed by the clinic and the row's
/// external id, as the clinic's CRM/HIS identifies it: a row the clinic
/// already has under another customer is moved to `customer_id` (the
/// triggers of migration 4 then have attribution redo the credits of both
/// customers, as for any corrected visit or order). `key` is (clinic id,
/// customer id, external id); `values` are `columns` in order.
fn upsert(
    tx: &Transaction<'_>,
    table: &str,
    columns: &[&str],
    key: (i64, i64, &str),
    values: &[&dyn rusqlite::ToSql],
) -> rusqlite::Result<Change> {
    let (clinic_id, customer_id, external_id) = key;
    // The row already under this customer first, if there is one.
    let found: Vec<i64> = tx
        .prepare_cached(&format!(
            "SELECT e.id FROM {table} e JOIN customers c ON c.id = e.customer_id
             WHERE e.external_id = ?1 AND c.clinic_id = ?2
             ORDER BY e.customer_id = ?3 DESC, e.id"
        ))?
        .query_map(params![external_id, clinic_id, customer_id], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let marks: Vec<String> = (3..3 + columns.len()).map(|i| format!("?{i}")).collect();
    let mut all: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(values.len() + 2);
    let Some((&id, copies)) = found.split_first() else {
        all.extend([&customer_id as &dyn rusqlite::ToSql, &external_id]);
        all.extend(values);
        tx.prepare_cached(&format!(
            "INSERT INTO {table} (customer_id, external_id, {}) VALUES (?1, ?2, {})",
            columns.join(", "),
            marks.join(", ")
        ))?
        .execute(all.as_slice())?;
        return Ok(Change::Inserted);
    };
    // Earlier imports keyed rows by customer, so the same id imported under
    // two customers made two rows: they are one row of the clinic's.
    for copy in copies {
        tx.prepare_cached(&format!("DELETE FROM {table} WHERE id = ?1"))?
            .execute([copy])?;
    }
    let set: Vec<String> = columns
        .iter()
        .zip(&marks)
        .map(|(c, m)| format!("{c} = {m}"))
        .collect();
    let differs: Vec<String> = columns
        .iter()
        .zip(&marks)
        .map(|(c, m)| format!("{c} IS NOT {m}"))
        .collect();
    all.extend([&customer_id as &dyn rusqlite::ToSql, &id]);
    all.extend(values);
    let changed = tx
        .prepare_cached(&format!(
            "UPDATE {table} SET customer_id = ?1, {} WHERE id = ?2 AND (customer_id IS NOT ?1 OR {})",
            set.join(", "),
            differs.join(" OR ")
        ))?
        .execute(all.as_slice())?;
    Ok(if changed == 0 && copies.is_empty() {
        Change::Unchanged
    } else {
        Change::Updated
    })
}

/// Customers: only the columns the file has are written; new customers
/// start in `new` from `first_seen` (or now).
fn customers(
    tx: &Transaction<'_>,
    clinic_id: i64,
    rows: &[CustomerIn],
    now: Timestamp,
) -> std::result::Result<ImportCounts, ImportError> {
    let mut counts = ImportCounts::default();
    for row in rows {
        let mut columns: Vec<&str> = Vec::new();
        let mut values: Vec<rusqlite::types::Value> = Vec::new();
        let mut set = |column: &'static str, value: rusqlite::types::Value| {
            columns.push(column);
            values.push(value);
        };
        use rusqlite::types::Value;
        let text = |v: &Option<String>| v.clone().map_or(Value::Null, Value::Text);
        if let Some(name) = &row.name {
            set("name", Value::Text(name.clone()));
        }
        for (column, value) in [
            ("phone", &row.phone),
            ("email", &row.email),
            ("wechat_openid", &row.wechat_openid),
            ("wecom_external_userid", &row.wecom_external_userid),
            ("city", &row.city),
            ("source_channel", &row.source_channel),
        ] {
            if let Some(value) = value {
                set(column, text(value));
            }
        }
        if let Some(gender) = &row.gender {
            set(
                "gender",
                gender.map_or(Value::Null, |g: Gender| Value::Text(g.as_str().into())),
            );
        }
        if let Some(birth) = &row.birth_date {
            set(
                "birth_date",
                birth.map_or(Value::Null, |d| {
                    Value::Text(d.format("%Y-%m-%d").to_string())
                }),
            );
        }
        if let Some(tags) = &row.tags {
            set(
                "tags",
                Value::Text(serde_json::to_string(tags).unwrap_or_else(|_| "[]".into())),
            );
        }
        for (column, value) in [
            "consent_sms",
            "consent_phone",
            "consent_wechat",
            "consent_email",
        ]
        .into_iter()
        .zip(row.consent)
        {
            if let Some(value) = value {
                set(column, Value::Integer(i64::from(value)));
            }
        }
        if let Some(dnc) = row.do_not_contact {
            set("do_not_contact", Value::Integer(i64::from(dnc)));
        }

        let existing: Option<i64> = tx
            .prepare_cached("SELECT id FROM customers WHERE clinic_id = ?1 AND external_id = ?2")?
            .query_row(params![clinic_id, row.external_id], |r| r.get(0))
            .optional()?;
        match existing {
            None => {
                let first_seen = row.first_seen.unwrap_or(now);
                let mut all_columns = vec!["clinic_id", "external_id", "created_at", "updated_at"];
                all_columns.extend(columns.iter().copied());
                let mut all_values = vec![
                    Value::Integer(clinic_id),
                    Value::Text(row.external_id.clone()),
                    Value::Integer(first_seen),
                    Value::Integer(now),
                ];
                all_values.extend(values);
                let marks: Vec<String> = (1..=all_columns.len()).map(|i| format!("?{i}")).collect();
                tx.execute(
                    &format!(
                        "INSERT INTO customers ({}) VALUES ({})",
                        all_columns.join(", "),
                        marks.join(", ")
                    ),
                    rusqlite::params_from_iter(all_values),
                )?;
                let id = tx.last_insert_rowid();
                place_new(tx, id, first_seen)?;
                counts.add(Change::Inserted);
            }
            Some(id) if columns.is_empty() => {
                let _ = id;
                counts.add(Change::Unchanged);
            }
            Some(id) => {
                let assignments: Vec<String> = columns
                    .iter()
                    .enumerate()
                    .map(|(i, c)| format!("{c} = ?{}", i + 2))
                    .collect();
                let differs: Vec<String> = columns
                    .iter()
                    .enumerate()
                    .map(|(i, c)| format!("{c} IS NOT ?{}", i + 2))
                    .collect();
                let updated_at = columns.len() + 2;
                let mut params = vec![Value::Integer(id)];
                params.extend(values);
                params.push(Value::Integer(now));
                let changed = tx.execute(
                    &format!(
                        "UPDATE customers SET {}, updated_at = ?{updated_at} WHERE id = ?1 AND ({})",
                        assignments.join(", "),
                        differs.join(" OR ")
                    ),
                    rusqlite::params_from_iter(params),
                )?;
                counts.add(if changed == 0 {
                    Change::Unchanged
                } else {
                    Change::Updated
                });
            }
        }
    }
    Ok(counts)
}

/// A new customer's first placement, as `Ingest::add_customer` records it.
fn place_new(tx: &Transaction<'_>, customer_id: i64, at: Timestamp) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO transitions (customer_id, tick_id, from_pool, to_pool, rule_id, reason, at)
         VALUES (?1, NULL, NULL, ?2, NULL, 'imported', ?3)",
        params![customer_id, Pool::New.as_str(), at],
    )?;
    let transition = tx.last_insert_rowid();
    tx.execute(
        "INSERT INTO customer_pools (customer_id, pool, entered_at, transition_id) VALUES (?1, ?2, ?3, ?4)",
        params![customer_id, Pool::New.as_str(), at, transition],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::VisitIn;
    use crate::store::ingest::NewCustomer;

    #[test]
    fn copies_of_one_visit_under_two_customers_become_one_row() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::create(&dir.path().join("r.db")).unwrap();
        let clinic = store
            .ensure_clinic("main", "c", "Asia/Shanghai", 0)
            .unwrap();
        let mut ingest = store.ingest().unwrap();
        for c in ["C1", "C2"] {
            ingest
                .add_customer(clinic, &NewCustomer::named(c, c), 0)
                .unwrap();
        }
        ingest.commit().unwrap();
        // What the old key (customer, external id) let two imports write.
        for customer in [1, 2] {
            store
                .conn
                .execute(
                    "INSERT INTO visits (customer_id, external_id, at) VALUES (?1, 'V1', 100)",
                    [customer],
                )
                .unwrap();
        }
        let rows = Rows::Visits(vec![VisitIn {
            line: 2,
            external_id: "V1".into(),
            customer: "C1".into(),
            at: 100,
            department: None,
            note: None,
        }]);
        let counts = store.import(clinic, &rows, 1000).unwrap();
        assert_eq!(counts.updated, 1);
        let left: Vec<(i64, i64)> = store
            .conn
            .prepare("SELECT id, customer_id FROM visits")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(left, [(1, 1)], "C1's row stays, the copy is gone");
        assert_eq!(
            store.import(clinic, &rows, 1000).unwrap().unchanged,
            1,
            "and a re-import changes nothing"
        );
    }
}
