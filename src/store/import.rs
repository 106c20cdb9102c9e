//! Writing imported CRM/HIS rows: upserts by the clinic's own ids (a visit,
//! order or follow-up is the clinic's row `external_id`, whichever customer
//! it is filed under), as the rows are read, all in one transaction.
//!
//! All or nothing: a row that is wrong (the reader's problems), that
//! points at a customer the database does not know, or that repeats an id
//! of the file makes the whole import fail with its line, and the
//! transaction is rolled back. After the first problem nothing more is
//! written, but every row is still checked, so one run names them all.
//! The ids seen so far are kept in a temporary table, not in memory, so
//! memory stays flat whatever the size of the file.

use rusqlite::{OptionalExtension, Transaction, params};

use super::Store;
use crate::base::clock::Timestamp;
use crate::base::i18n::t;
use crate::base::model::{Gender, Pool};
use crate::base::reason::stored;
use crate::import::{CustomerIn, Problems, Row, RowError, quote};

/// What an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportCounts {
    pub inserted: usize,
    pub updated: usize,
    pub unchanged: usize,
}

/// How to import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportOptions {
    /// The time of the import: new customers without `first_seen` are
    /// first seen now.
    pub now: Timestamp,
    /// A new customer's consent for a channel the file says nothing about
    /// (no column, or an empty cell): `[consent] default_when_absent`.
    pub consent_when_absent: bool,
}

/// What an import did, for its summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub rows: usize,
    pub counts: ImportCounts,
    /// New customers given [`ImportOptions::consent_when_absent`] for at
    /// least one channel.
    pub consent_defaulted: usize,
    /// The consent columns (`consent_sms`...) that default was applied to.
    pub consent_columns: Vec<&'static str>,
}

/// Why an import wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{} problem(s) in the file", .0.total)]
    Rows(Problems),
    #[error(transparent)]
    Store(#[from] super::StoreError),
}

impl From<rusqlite::Error> for ImportError {
    fn from(e: rusqlite::Error) -> Self {
        ImportError::Store(e.into())
    }
}

const CONSENT_COLUMNS: [&str; 4] = [
    "consent_sms",
    "consent_phone",
    "consent_wechat",
    "consent_email",
];

impl Store {
    /// Upserts the rows of a file for a clinic in one transaction, as they
    /// come: all or nothing. `rows` are a reader's rows or problems.
    pub fn import(
        &mut self,
        clinic_id: i64,
        rows: impl IntoIterator<Item = Result<Row, Vec<RowError>>>,
        options: &ImportOptions,
    ) -> std::result::Result<ImportReport, ImportError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(
            "CREATE TEMP TABLE import_ids (external_id TEXT PRIMARY KEY, line INTEGER NOT NULL) WITHOUT ROWID;",
        )?;
        let mut writer = Writer {
            tx: &tx,
            clinic_id,
            options,
            problems: Problems::default(),
            report: ImportReport::default(),
            defaulted: [false; 4],
        };
        for row in rows {
            match row {
                Ok(row) => writer.row(row)?,
                Err(errors) => writer.problems.extend(errors),
            }
        }
        let Writer {
            problems,
            mut report,
            defaulted,
            ..
        } = writer;
        if !problems.is_empty() {
            // Dropping the transaction rolls everything back.
            return Err(ImportError::Rows(problems));
        }
        tx.execute_batch("DROP TABLE temp.import_ids;")?;
        tx.commit()?;
        report.consent_columns = CONSENT_COLUMNS
            .into_iter()
            .zip(defaulted)
            .filter_map(|(column, applied)| applied.then_some(column))
            .collect();
        Ok(report)
    }
}

impl Store {
    /// What `recall import` does with a file: its rows upserted (as
    /// [`Store::import`]), then the returns credited to earlier contacts
    /// ([`Store::attribute`]). `on_row` is called after each row is read,
    /// with the rows read so far (for a progress bar). Returns the report
    /// and the number of returns credited.
    pub fn import_file(
        &mut self,
        clinic_id: i64,
        reader: crate::import::Reader,
        options: &ImportOptions,
        mut on_row: impl FnMut(u64),
    ) -> std::result::Result<(ImportReport, usize), ImportError> {
        let mut read = 0u64;
        let rows = reader.inspect(|_| {
            read += 1;
            on_row(read);
        });
        let report = self.import(clinic_id, rows, options)?;
        let credited = self.attribute()?;
        Ok((report, credited))
    }
}

/// One import's transaction and what it has found so far.
struct Writer<'a> {
    tx: &'a Transaction<'a>,
    clinic_id: i64,
    options: &'a ImportOptions,
    problems: Problems,
    report: ImportReport,
    /// Channels the consent default was applied to.
    defaulted: [bool; 4],
}

impl Writer<'_> {
    /// Checks one row and, while the file has no problem, writes it.
    fn row(&mut self, row: Row) -> std::result::Result<(), ImportError> {
        let line = row.line();
        self.report.rows += 1;
        let mut fine = self.first_time(row.external_id(), line)?;
        let customer = match &row {
            Row::Customer(_) => None,
            Row::Visit(r) => Some(&r.customer),
            Row::Order(r) => Some(&r.customer),
            Row::Followup(r) => Some(&r.customer),
        };
        let customer_id = match customer {
            Some(customer) => {
                let id = self.customer_id(customer, line)?;
                fine &= id.is_some();
                id.unwrap_or_default()
            }
            None => 0,
        };
        if !fine || !self.problems.is_empty() {
            return Ok(());
        }
        let (tx, clinic_id) = (self.tx, self.clinic_id);
        let change = match &row {
            Row::Customer(r) => self.customer(r)?,
            Row::Visit(r) => upsert(
                tx,
                "visits",
                &["at", "department", "note"],
                (clinic_id, customer_id, &r.external_id),
                params![r.at, r.department, r.note],
            )?,
            Row::Order(r) => upsert(
                tx,
                "orders",
                &["at", "amount_cents", "project", "department"],
                (clinic_id, customer_id, &r.external_id),
                params![r.at, r.amount_cents, r.project, r.department],
            )?,
            Row::Followup(r) => upsert(
                tx,
                "followups",
                &["at", "result", "staff", "note"],
                (clinic_id, customer_id, &r.external_id),
                params![r.at, r.result.as_str(), r.staff, r.note],
            )?,
        };
        self.report.counts.add(change);
        Ok(())
    }

    /// Whether the file has not given this id before; a problem if it has.
    fn first_time(&mut self, id: &str, line: usize) -> rusqlite::Result<bool> {
        let added = self
            .tx
            .prepare_cached(
                "INSERT INTO temp.import_ids (external_id, line) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            )?
            .execute(params![id, line as i64])?;
        if added == 1 {
            return Ok(true);
        }
        let first: i64 = self
            .tx
            .prepare_cached("SELECT line FROM temp.import_ids WHERE external_id = ?1")?
            .query_row([id], |r| r.get(0))?;
        self.problems.push(RowError {
            line,
            message: t!("import.err.id_twice", id = quote(id), first, line),
        });
        Ok(false)
    }

    /// The database id of a row's customer; an unknown customer is a problem.
    fn customer_id(&mut self, customer: &str, line: usize) -> rusqlite::Result<Option<i64>> {
        let id = self
            .tx
            .prepare_cached("SELECT id FROM customers WHERE clinic_id = ?1 AND external_id = ?2")?
            .query_row(params![self.clinic_id, customer], |r| r.get::<_, i64>(0))
            .optional()?;
        if id.is_none() {
            self.problems.push(RowError {
                line,
                message: t!("import.err.unknown_customer", customer = quote(customer)),
            });
        }
        Ok(id)
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

/// Inserts or updates one history row keyed by the clinic and the row's
/// external id, as the clinic's CRM/HIS identifies it: a row the clinic
/// already has under another customer is moved to `customer_id` (the
/// triggers of migration 4 then have attribution redo the credits of both
/// customers, as for any corrected visit or order). `key` is (clinic id,
/// customer id, external id); `values` are `columns` in order.
fn upsert(
    tx: &Transaction<'_>,
    table: &'static str,
    columns: &[&'static str],
    key: (i64, i64, &str),
    values: &[&dyn rusqlite::ToSql],
) -> rusqlite::Result<Change> {
    let (clinic_id, customer_id, external_id) = key;
    // The row already under this customer first, if there is one. Found by
    // the external id, then checked for the clinic: as a join, SQLite would
    // walk every customer of the clinic for each row (the time of an
    // import grew with rows × customers).
    let found: Vec<i64> = tx
        .prepare_cached(&format!(
            "SELECT e.id FROM {table} e
             WHERE e.external_id = ?1
               AND EXISTS (SELECT 1 FROM customers c WHERE c.id = e.customer_id AND c.clinic_id = ?2)
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

impl Writer<'_> {
    /// A customer: only the columns the file has are written; a new
    /// customer starts in `new` from `first_seen` (or now), waiting for
    /// onboarding, with the consent default for every channel the file
    /// says nothing about.
    fn customer(&mut self, row: &CustomerIn) -> rusqlite::Result<Change> {
        use rusqlite::types::Value;
        let (tx, clinic_id, now) = (self.tx, self.clinic_id, self.options.now);
        let mut columns: Vec<&str> = Vec::new();
        let mut values: Vec<Value> = Vec::new();
        let mut set = |column: &'static str, value: Value| {
            columns.push(column);
            values.push(value);
        };
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
            ("advisor", &row.advisor),
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
        for (column, value) in CONSENT_COLUMNS.into_iter().zip(row.consent) {
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
                // Waits for onboarding until judged: by `recall onboard`,
                // or by a tick if their history turns out to be new.
                let mut all_columns = vec![
                    "clinic_id",
                    "external_id",
                    "created_at",
                    "updated_at",
                    "onboarding",
                ];
                all_columns.extend(columns.iter().copied());
                let mut all_values = vec![
                    Value::Integer(clinic_id),
                    Value::Text(row.external_id.clone()),
                    Value::Integer(first_seen),
                    Value::Integer(now),
                    Value::Integer(1),
                ];
                all_values.extend(values);
                let mut defaulted = false;
                for (i, column) in CONSENT_COLUMNS.into_iter().enumerate() {
                    if row.consent[i].is_none() {
                        all_columns.push(column);
                        all_values
                            .push(Value::Integer(i64::from(self.options.consent_when_absent)));
                        self.defaulted[i] = true;
                        defaulted = true;
                    }
                }
                self.report.consent_defaulted += usize::from(defaulted);
                let marks: Vec<String> = (1..=all_columns.len()).map(|i| format!("?{i}")).collect();
                tx.prepare_cached(&format!(
                    "INSERT INTO customers ({}) VALUES ({})",
                    all_columns.join(", "),
                    marks.join(", ")
                ))?
                .execute(rusqlite::params_from_iter(all_values))?;
                let id = tx.last_insert_rowid();
                place_new(tx, id, first_seen)?;
                Ok(Change::Inserted)
            }
            Some(_) if columns.is_empty() => Ok(Change::Unchanged),
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
                let changed = tx
                    .prepare_cached(&format!(
                        "UPDATE customers SET {}, updated_at = ?{updated_at} WHERE id = ?1 AND ({})",
                        assignments.join(", "),
                        differs.join(" OR ")
                    ))?
                    .execute(rusqlite::params_from_iter(params))?;
                Ok(if changed == 0 {
                    Change::Unchanged
                } else {
                    Change::Updated
                })
            }
        }
    }
}

/// A new customer's first placement, as `Ingest::add_customer` records it.
fn place_new(tx: &Transaction<'_>, customer_id: i64, at: Timestamp) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO transitions (customer_id, tick_id, from_pool, to_pool, rule_id, reason, at)
         VALUES (?1, NULL, NULL, ?2, NULL, ?3, ?4)",
    )?
    .execute(params![
        customer_id,
        Pool::New.as_str(),
        stored(t!("move.imported")),
        at
    ])?;
    let transition = tx.last_insert_rowid();
    tx.prepare_cached(
        "INSERT INTO customer_pools (customer_id, pool, entered_at, transition_id) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![customer_id, Pool::New.as_str(), at, transition])?;
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
        let rows = || {
            [Ok(Row::Visit(VisitIn {
                line: 2,
                external_id: "V1".into(),
                customer: "C1".into(),
                at: 100,
                department: None,
                note: None,
            }))]
        };
        let options = ImportOptions {
            now: 1000,
            consent_when_absent: true,
        };
        let report = store.import(clinic, rows(), &options).unwrap();
        assert_eq!(report.counts.updated, 1);
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
            store
                .import(clinic, rows(), &options)
                .unwrap()
                .counts
                .unchanged,
            1,
            "and a re-import changes nothing"
        );
    }
}
