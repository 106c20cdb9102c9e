//! Adding customers and their history: visits, orders, follow-ups.
//!
//! Everything added through one [`Ingest`] lands in one transaction: commit
//! makes it all visible, dropping it without commit leaves the database as it
//! was. A new customer starts in the `new` pool, with that first placement
//! recorded as a transition like any other move.

use chrono::NaiveDate;
use rusqlite::{Transaction, params};

use super::{Result, Store};
use crate::base::clock::Timestamp;
use crate::base::i18n::t;
use crate::base::model::{FollowupResult, Gender, Pool};
use crate::base::reason::stored;

/// Which channels a customer agreed to be contacted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Consent {
    pub sms: bool,
    pub phone: bool,
    pub wechat: bool,
    pub email: bool,
}

impl Default for Consent {
    fn default() -> Self {
        Consent {
            sms: true,
            phone: true,
            wechat: true,
            email: true,
        }
    }
}

/// A customer as the clinic's CRM knows them.
#[derive(Debug, Clone, Default)]
pub struct NewCustomer {
    /// The clinic's own id for the customer (CRM/HIS), unique per clinic.
    pub external_id: String,
    pub name: String,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub wechat_openid: Option<String>,
    pub wecom_external_userid: Option<String>,
    pub gender: Option<Gender>,
    pub birth_date: Option<NaiveDate>,
    pub city: Option<String>,
    pub source_channel: Option<String>,
    /// The customer's own advisor (专属顾问), a staff member's name.
    pub advisor: Option<String>,
    pub tags: Vec<String>,
    pub consent: Consent,
    pub do_not_contact: bool,
}

impl NewCustomer {
    /// A customer with only an id and a name.
    pub fn named(external_id: &str, name: &str) -> Self {
        NewCustomer {
            external_id: external_id.to_string(),
            name: name.to_string(),
            ..NewCustomer::default()
        }
    }
}

/// One transaction of additions.
pub struct Ingest<'a> {
    tx: Transaction<'a>,
}

impl Store {
    /// Starts adding customers and history in one transaction.
    pub fn ingest(&mut self) -> Result<Ingest<'_>> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        Ok(Ingest { tx })
    }
}

impl Ingest<'_> {
    /// Adds a customer who was first seen at `first_seen_at` (their first
    /// visit, or when the CRM created them) and places them in `new` from then.
    pub fn add_customer(
        &mut self,
        clinic_id: i64,
        c: &NewCustomer,
        first_seen_at: Timestamp,
    ) -> Result<i64> {
        let tags = serde_json::to_string(&c.tags).unwrap_or_else(|_| "[]".to_string());
        self.tx
            .prepare_cached(
                "INSERT INTO customers (clinic_id, external_id, name, phone, email, wechat_openid,
                    wecom_external_userid, gender, birth_date, city, source_channel, tags,
                    consent_sms, consent_phone, consent_wechat, consent_email, do_not_contact,
                    created_at, updated_at, advisor)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?18, ?19)",
            )?
            .execute(params![
                clinic_id,
                c.external_id,
                c.name,
                c.phone,
                c.email,
                c.wechat_openid,
                c.wecom_external_userid,
                c.gender.map(Gender::as_str),
                c.birth_date.map(|d| d.format("%Y-%m-%d").to_string()),
                c.city,
                c.source_channel,
                tags,
                c.consent.sms,
                c.consent.phone,
                c.consent.wechat,
                c.consent.email,
                c.do_not_contact,
                first_seen_at,
                c.advisor,
            ])?;
        let id = self.tx.last_insert_rowid();
        self.place(
            id,
            Pool::New,
            first_seen_at,
            &stored(t!("move.first_record")),
        )?;
        Ok(id)
    }

    /// Puts a customer into a pool outside any tick (first placement, or a
    /// migration from another system), recording it as a transition.
    pub fn place(
        &mut self,
        customer_id: i64,
        pool: Pool,
        at: Timestamp,
        reason: &str,
    ) -> Result<()> {
        let from: Option<String> = self
            .tx
            .prepare_cached("SELECT pool FROM customer_pools WHERE customer_id = ?1")?
            .query_row([customer_id], |r| r.get(0))
            .ok();
        self.tx
            .prepare_cached(
                "INSERT INTO transitions (customer_id, tick_id, from_pool, to_pool, rule_id, reason, at)
                 VALUES (?1, NULL, ?2, ?3, NULL, ?4, ?5)",
            )?
            .execute(params![customer_id, from, pool.as_str(), reason, at])?;
        let transition = self.tx.last_insert_rowid();
        self.tx
            .prepare_cached(
                "INSERT INTO customer_pools (customer_id, pool, entered_at, transition_id) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (customer_id) DO UPDATE SET pool = excluded.pool,
                    entered_at = excluded.entered_at, transition_id = excluded.transition_id",
            )?
            .execute(params![customer_id, pool.as_str(), at, transition])?;
        Ok(())
    }

    pub fn add_visit(
        &mut self,
        customer_id: i64,
        at: Timestamp,
        department: Option<&str>,
    ) -> Result<i64> {
        self.tx
            .prepare_cached("INSERT INTO visits (customer_id, at, department) VALUES (?1, ?2, ?3)")?
            .execute(params![customer_id, at, department])?;
        Ok(self.tx.last_insert_rowid())
    }

    pub fn add_order(
        &mut self,
        customer_id: i64,
        at: Timestamp,
        amount_cents: i64,
        project: Option<&str>,
        department: Option<&str>,
    ) -> Result<i64> {
        self.tx
            .prepare_cached(
                "INSERT INTO orders (customer_id, at, amount_cents, project, department) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![customer_id, at, amount_cents, project, department])?;
        Ok(self.tx.last_insert_rowid())
    }

    pub fn add_followup(
        &mut self,
        customer_id: i64,
        at: Timestamp,
        staff: Option<&str>,
        result: FollowupResult,
        note: Option<&str>,
    ) -> Result<i64> {
        self.tx
            .prepare_cached(
                "INSERT INTO followups (customer_id, at, staff, result, note) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![customer_id, at, staff, result.as_str(), note])?;
        Ok(self.tx.last_insert_rowid())
    }

    /// Makes everything added visible at once.
    pub fn commit(self) -> Result<()> {
        self.tx.commit()?;
        Ok(())
    }
}
