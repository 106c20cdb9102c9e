//! The database schema, as an append-only list of migrations.
//!
//! Migration N brings `PRAGMA user_version` from N-1 to N. Never edit or
//! remove a migration that has shipped: add a new one. All pending migrations
//! are applied in one transaction when a store is opened.
//!
//! Conventions: times are INTEGER Unix seconds (UTC); money is INTEGER cents
//! (分); booleans are INTEGER 0/1; enumerations are TEXT with a CHECK.

pub const MIGRATIONS: &[&str] = &[
    // 1: the core model.
    r#"
CREATE TABLE clinics (
    id          INTEGER PRIMARY KEY,
    code        TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    timezone    TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE customers (
    id                    INTEGER PRIMARY KEY,
    clinic_id             INTEGER NOT NULL REFERENCES clinics(id),
    external_id           TEXT NOT NULL,
    name                  TEXT NOT NULL DEFAULT '',
    phone                 TEXT,
    email                 TEXT,
    wechat_openid         TEXT,
    wecom_external_userid TEXT,
    gender                TEXT CHECK (gender IN ('female', 'male', 'other')),
    birth_date            TEXT,
    city                  TEXT,
    source_channel        TEXT,
    tags                  TEXT NOT NULL DEFAULT '[]',
    consent_sms           INTEGER NOT NULL DEFAULT 1,
    consent_phone         INTEGER NOT NULL DEFAULT 1,
    consent_wechat        INTEGER NOT NULL DEFAULT 1,
    consent_email         INTEGER NOT NULL DEFAULT 1,
    do_not_contact        INTEGER NOT NULL DEFAULT 0,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL,
    UNIQUE (clinic_id, external_id)
);

CREATE TABLE visits (
    id           INTEGER PRIMARY KEY,
    customer_id  INTEGER NOT NULL REFERENCES customers(id),
    external_id  TEXT,
    at           INTEGER NOT NULL,
    department   TEXT,
    note         TEXT
);
CREATE INDEX visits_customer_at ON visits (customer_id, at);
CREATE UNIQUE INDEX visits_external ON visits (customer_id, external_id) WHERE external_id IS NOT NULL;

CREATE TABLE orders (
    id            INTEGER PRIMARY KEY,
    customer_id   INTEGER NOT NULL REFERENCES customers(id),
    external_id   TEXT,
    at            INTEGER NOT NULL,
    amount_cents  INTEGER NOT NULL CHECK (amount_cents >= 0),
    project       TEXT,
    department    TEXT
);
CREATE INDEX orders_customer_at ON orders (customer_id, at, amount_cents);
CREATE UNIQUE INDEX orders_external ON orders (customer_id, external_id) WHERE external_id IS NOT NULL;

CREATE TABLE followups (
    id           INTEGER PRIMARY KEY,
    customer_id  INTEGER NOT NULL REFERENCES customers(id),
    external_id  TEXT,
    at           INTEGER NOT NULL,
    staff        TEXT,
    result       TEXT NOT NULL CHECK (result IN ('smooth', 'not_smooth', 'unreachable', 'refused')),
    note         TEXT
);
CREATE INDEX followups_customer_at ON followups (customer_id, at, result);
CREATE UNIQUE INDEX followups_external ON followups (customer_id, external_id) WHERE external_id IS NOT NULL;

CREATE TABLE ticks (
    id           INTEGER PRIMARY KEY,
    at           INTEGER NOT NULL UNIQUE,
    status       TEXT NOT NULL CHECK (status IN ('running', 'done')),
    cursor       INTEGER NOT NULL DEFAULT 0,
    evaluated    INTEGER NOT NULL DEFAULT 0,
    moves        INTEGER NOT NULL DEFAULT 0,
    messages     INTEGER NOT NULL DEFAULT 0,
    errors       INTEGER NOT NULL DEFAULT 0,
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER
);

-- Append-only history of pool moves. The first row of a customer has no from_pool.
CREATE TABLE transitions (
    id           INTEGER PRIMARY KEY,
    customer_id  INTEGER NOT NULL REFERENCES customers(id),
    tick_id      INTEGER REFERENCES ticks(id),
    from_pool    TEXT CHECK (from_pool IN ('new', 'customer', 'warning', 'maintenance', 'churned')),
    to_pool      TEXT NOT NULL CHECK (to_pool IN ('new', 'customer', 'warning', 'maintenance', 'churned')),
    rule_id      TEXT,
    reason       TEXT NOT NULL,
    at           INTEGER NOT NULL
);
CREATE UNIQUE INDEX transitions_tick_customer ON transitions (tick_id, customer_id) WHERE tick_id IS NOT NULL;
CREATE INDEX transitions_customer_at ON transitions (customer_id, at);
CREATE INDEX transitions_at ON transitions (at);

-- Append-only, with one exception: `reason` may be rewritten, because it
-- quotes the customer's facts ("days_since_last_visit=95") and a customer's
-- erasure request (`recall forget`) must remove them. The pools, rule and
-- time of every move stay as written. (Changed before any release, so
-- migration 1 was edited rather than followed by a new one.)
CREATE TRIGGER transitions_append_only_update
BEFORE UPDATE OF id, customer_id, tick_id, from_pool, to_pool, rule_id, at ON transitions
BEGIN SELECT RAISE(ABORT, 'transitions are append-only'); END;
CREATE TRIGGER transitions_append_only_delete BEFORE DELETE ON transitions
BEGIN SELECT RAISE(ABORT, 'transitions are append-only'); END;

-- The current pool of each customer: the last transition, kept at hand.
CREATE TABLE customer_pools (
    customer_id    INTEGER PRIMARY KEY REFERENCES customers(id),
    pool           TEXT NOT NULL CHECK (pool IN ('new', 'customer', 'warning', 'maintenance', 'churned')),
    entered_at     INTEGER NOT NULL,
    transition_id  INTEGER NOT NULL REFERENCES transitions(id)
);

-- The outbox and the outreach log in one: a row per message, from the tick
-- that decided it to its final status.
CREATE TABLE outreach (
    id            INTEGER PRIMARY KEY,
    customer_id   INTEGER NOT NULL REFERENCES customers(id),
    tick_id       INTEGER REFERENCES ticks(id),
    rule_id       TEXT NOT NULL,
    action_index  INTEGER NOT NULL,
    pool          TEXT NOT NULL,
    channel       TEXT NOT NULL CHECK (channel IN ('sms', 'phone', 'wechat', 'email')),
    template      TEXT NOT NULL,
    subject       TEXT,
    content       TEXT NOT NULL,
    content_html  TEXT,
    params        TEXT,
    status        TEXT NOT NULL CHECK (status IN ('queued', 'sending', 'awaiting', 'sent', 'failed', 'suppressed', 'opted_out', 'held_out')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT,
    sender        TEXT,
    provider_id   TEXT,
    -- What sending it cost, in thousandths of a yuan (厘), from the channel's `cost`.
    cost_milli    INTEGER NOT NULL DEFAULT 0,
    -- Days after the contact in which a visit or purchase counts as a recall.
    attribution_days INTEGER NOT NULL DEFAULT 30,
    -- The same message rendered for the channel's fallback (JSON), used when
    -- this channel cannot reach the customer.
    fallback      TEXT,
    created_at    INTEGER NOT NULL,
    due_at        INTEGER NOT NULL,
    -- When it was handed to the provider (sent or awaiting a person).
    sent_at       INTEGER,
    -- When an awaiting message was last asked about.
    polled_at     INTEGER,
    updated_at    INTEGER NOT NULL
);
CREATE UNIQUE INDEX outreach_once ON outreach (tick_id, customer_id, rule_id, action_index) WHERE tick_id IS NOT NULL;
CREATE INDEX outreach_due ON outreach (status, due_at);
CREATE INDEX outreach_awaiting ON outreach (polled_at) WHERE status = 'awaiting';
-- Covers the tick's per-customer, per-rule read of past messages.
CREATE INDEX outreach_customer ON outreach (customer_id, rule_id, created_at, status, sent_at);

-- What became of each contact beyond its delivery status: responses and
-- bookings (from call tasks, providers, staff), and the visits and purchases
-- credited to it by attribution. One row per (message, kind, source event).
CREATE TABLE outcomes (
    id            INTEGER PRIMARY KEY,
    outreach_id   INTEGER NOT NULL REFERENCES outreach(id),
    kind          TEXT NOT NULL CHECK (kind IN ('delivered', 'responded', 'booked', 'visited', 'purchased', 'opted_out')),
    at            INTEGER NOT NULL,
    amount_cents  INTEGER NOT NULL DEFAULT 0,
    source        TEXT NOT NULL,
    -- The event behind it: 'visit:12', 'order:34', 'task:5', ...
    ref           TEXT NOT NULL,
    UNIQUE (outreach_id, kind, ref)
);
CREATE INDEX outcomes_kind ON outcomes (kind, at);

-- Small named counters: how far attribution has read visits and orders.
CREATE TABLE meta (
    key    TEXT PRIMARY KEY,
    value  INTEGER NOT NULL
);

-- Phone-call tasks for the clinic's staff (the `phone_tasks` sender): one
-- per attempt of a phone message, assigned to a person for a day.
CREATE TABLE call_tasks (
    id            INTEGER PRIMARY KEY,
    outreach_id   INTEGER NOT NULL REFERENCES outreach(id),
    attempt       INTEGER NOT NULL,
    customer_id   INTEGER NOT NULL REFERENCES customers(id),
    staff         TEXT NOT NULL,
    -- The clinic-calendar day the call is planned for (YYYY-MM-DD).
    due_date      TEXT NOT NULL,
    script        TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('open', 'done')),
    outcome       TEXT CHECK (outcome IN ('reached_booked', 'reached_interested', 'reached_declined',
                                          'no_answer', 'wrong_number', 'opt_out')),
    note          TEXT,
    created_at    INTEGER NOT NULL,
    done_at       INTEGER,
    UNIQUE (outreach_id, attempt)
);
CREATE INDEX call_tasks_day ON call_tasks (due_date, staff);
CREATE INDEX call_tasks_open ON call_tasks (status, due_date);
"#,
    // 2: the churn model.
    r#"
-- Each fit of the churn model, with its parameters and the data it saw, so
-- every churn fact a rule read can be traced back to the fit behind it
-- (ticks.model_fit_id).
CREATE TABLE model_fits (
    id          INTEGER PRIMARY KEY,
    clinic_id   INTEGER NOT NULL REFERENCES clinics(id),
    -- The data cut: visits and orders at or before it were used.
    as_of       INTEGER NOT NULL,
    -- The earliest first visit among the customers fitted.
    data_from   INTEGER NOT NULL,
    customers   INTEGER NOT NULL,
    -- Customers with more than one visit day.
    repeaters   INTEGER NOT NULL,
    -- The fitted parameters (predict::Model as JSON).
    model       TEXT NOT NULL,
    -- How the fit went: log-likelihoods, iterations, why there is no spend model.
    fit         TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX model_fits_as_of ON model_fits (clinic_id, as_of);
ALTER TABLE ticks ADD COLUMN model_fit_id INTEGER REFERENCES model_fits(id);
"#,
    // 3: ticks read each customer's orders with their project and department
    // (treatment cycles, the churn model's repeat spend) from the index alone.
    r#"
DROP INDEX orders_customer_at;
CREATE INDEX orders_customer_at ON orders (customer_id, at, amount_cents, project, department);
"#,
    // 4: attribution by customer. A return's credit depends on the
    // customer's returns and sent messages, so triggers queue the customer
    // whenever one of those arrives (a visit or order added; a message
    // becoming sent, or no longer sent, or its contact time changing), and
    // `Store::attribute` recomputes every credit of the queued customers.
    // This replaces the id watermarks in `meta`, which missed messages that
    // became sent after their customer's returns had been read. Customers
    // with a sent message are queued once, so earlier credits are put right.
    // (The triggers insert only what is missing rather than rely on OR
    // IGNORE, which an UPSERT firing them would override.)
    r#"
CREATE TABLE attribution_queue (
    customer_id  INTEGER PRIMARY KEY
);
INSERT OR IGNORE INTO attribution_queue (customer_id)
    SELECT DISTINCT customer_id FROM outreach WHERE status = 'sent';
DELETE FROM meta WHERE key IN ('attributed_visit_id', 'attributed_order_id');

CREATE TRIGGER attribution_visit_insert AFTER INSERT ON visits
BEGIN INSERT INTO attribution_queue (customer_id) SELECT NEW.customer_id WHERE NOT EXISTS (SELECT 1 FROM attribution_queue WHERE customer_id = NEW.customer_id); END;
CREATE TRIGGER attribution_order_insert AFTER INSERT ON orders
BEGIN INSERT INTO attribution_queue (customer_id) SELECT NEW.customer_id WHERE NOT EXISTS (SELECT 1 FROM attribution_queue WHERE customer_id = NEW.customer_id); END;

-- No trigger on inserting messages: they are born queued, failed or held
-- out, never sent, and an insert trigger (run for every row, WHEN or not)
-- made a big tick's writes 70% slower (measured with recall bench).
CREATE TRIGGER attribution_outreach_update
AFTER UPDATE OF status, sent_at, attribution_days, customer_id ON outreach
WHEN (OLD.status = 'sent') <> (NEW.status = 'sent')
  OR (NEW.status = 'sent' AND (OLD.sent_at IS NOT NEW.sent_at
                               OR OLD.attribution_days <> NEW.attribution_days
                               OR OLD.customer_id <> NEW.customer_id))
BEGIN INSERT INTO attribution_queue (customer_id) SELECT c FROM (SELECT OLD.customer_id AS c UNION SELECT NEW.customer_id)
    WHERE c NOT IN (SELECT customer_id FROM attribution_queue); END;
"#,
    // 5: a visit or order corrected (time, amount, customer) or removed
    // queues its customers for attribution too, old and new, so a corrected
    // import (an amount, a visit that was before the contact after all)
    // never leaves a stale credit. Needs the queue of migration 4.
    r#"
CREATE TRIGGER attribution_visit_update AFTER UPDATE OF customer_id, at ON visits
BEGIN INSERT INTO attribution_queue (customer_id) SELECT c FROM (SELECT OLD.customer_id AS c UNION SELECT NEW.customer_id)
    WHERE c NOT IN (SELECT customer_id FROM attribution_queue); END;
CREATE TRIGGER attribution_visit_delete AFTER DELETE ON visits
BEGIN INSERT INTO attribution_queue (customer_id) SELECT OLD.customer_id WHERE NOT EXISTS (SELECT 1 FROM attribution_queue WHERE customer_id = OLD.customer_id); END;
CREATE TRIGGER attribution_order_update AFTER UPDATE OF customer_id, at, amount_cents ON orders
BEGIN INSERT INTO attribution_queue (customer_id) SELECT c FROM (SELECT OLD.customer_id AS c UNION SELECT NEW.customer_id)
    WHERE c NOT IN (SELECT customer_id FROM attribution_queue); END;
CREATE TRIGGER attribution_order_delete AFTER DELETE ON orders
BEGIN INSERT INTO attribution_queue (customer_id) SELECT OLD.customer_id WHERE NOT EXISTS (SELECT 1 FROM attribution_queue WHERE customer_id = OLD.customer_id); END;
"#,
    // 6: imports key visits, orders and follow-ups on the clinic and the
    // row's external id (not the customer), so they look rows up by the
    // external id alone.
    r#"
CREATE INDEX visits_external_id ON visits (external_id) WHERE external_id IS NOT NULL;
CREATE INDEX orders_external_id ON orders (external_id) WHERE external_id IS NOT NULL;
CREATE INDEX followups_external_id ON followups (external_id) WHERE external_id IS NOT NULL;
"#,
    // 7: when a message's sender first failed with a retryable error: the
    // start of its retry budget (`[dispatch] give_up_after`). NULL while it
    // has not failed, and again after a fallback or a requeue by hand.
    r#"
ALTER TABLE outreach ADD COLUMN retrying_since INTEGER;
"#,
    // 8: a staff notice about new call tasks (a `phone_tasks` sender's
    // `notify`) is owed for a task until the notice goes through or is given
    // up. Kept here rather than in the process, so a notice that failed is
    // sent by the next dispatch, whichever process runs it. Tasks made
    // before this migration owe none.
    r#"
ALTER TABLE call_tasks ADD COLUMN notice_pending INTEGER NOT NULL DEFAULT 0;
CREATE INDEX call_tasks_notice ON call_tasks (id) WHERE notice_pending = 1;
"#,
    // 9: an import finds a visit, order or follow-up by its external id and
    // then needs its customer: one unique index on (external_id,
    // customer_id) per table answers that from the index alone and still
    // keeps an id unique per customer. It replaces migration 1's
    // (customer_id, external_id) and migration 6's (external_id), so an
    // imported row updates one index of the two instead of both.
    r#"
DROP INDEX visits_external;
DROP INDEX visits_external_id;
CREATE UNIQUE INDEX visits_external ON visits (external_id, customer_id) WHERE external_id IS NOT NULL;
DROP INDEX orders_external;
DROP INDEX orders_external_id;
CREATE UNIQUE INDEX orders_external ON orders (external_id, customer_id) WHERE external_id IS NOT NULL;
DROP INDEX followups_external;
DROP INDEX followups_external_id;
CREATE UNIQUE INDEX followups_external ON followups (external_id, customer_id) WHERE external_id IS NOT NULL;
"#,
    // 10: a message the clinic's own policy holds back (quiet hours, a
    // frequency cap) is marked, so a reload that changes the policy can
    // release it at once instead of leaving it due at the old policy's end.
    r#"
ALTER TABLE outreach ADD COLUMN held INTEGER NOT NULL DEFAULT 0;
CREATE INDEX outreach_held ON outreach (id) WHERE held = 1;
"#,
    // 11: `recall customer` finds customers by the last four digits of
    // their phone and by any part of their name, from indexes (see
    // `store::story`). Phones are stored as typed, so the tail is read from
    // the number without spaces, dashes, dots, slashes and brackets (ASCII
    // and full-width), full-width digits made ASCII; the view
    // `customer_phone_tails` names that expression so queries use the
    // index. Names are cut into their characters and pairs of characters
    // (ASCII lower-cased, the first 64 characters), kept by triggers: a
    // word of a query is looked up by its first pair (or its one
    // character), then matched in full.
    r#"
CREATE INDEX customers_phone_tail ON customers (substr(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(phone, ' ', ''), '-', ''), '.', ''), '(', ''), ')', ''), '/', ''), '　', ''), '－', ''), '（', ''), '）', ''), '．', ''), '／', ''), '０', '0'), '１', '1'), '２', '2'), '３', '3'), '４', '4'), '５', '5'), '６', '6'), '７', '7'), '８', '8'), '９', '9'), -4), clinic_id) WHERE phone IS NOT NULL;
CREATE VIEW customer_phone_tails AS
    SELECT id, clinic_id, substr(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(phone, ' ', ''), '-', ''), '.', ''), '(', ''), ')', ''), '/', ''), '　', ''), '－', ''), '（', ''), '）', ''), '．', ''), '／', ''), '０', '0'), '１', '1'), '２', '2'), '３', '3'), '４', '4'), '５', '5'), '６', '6'), '７', '7'), '８', '8'), '９', '9'), -4) AS tail FROM customers WHERE phone IS NOT NULL;

CREATE TABLE name_positions (n INTEGER PRIMARY KEY);
WITH RECURSIVE k(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM k WHERE n < 64)
INSERT INTO name_positions (n) SELECT n FROM k;

CREATE TABLE customer_name_grams (
    gram         TEXT NOT NULL,
    customer_id  INTEGER NOT NULL,
    PRIMARY KEY (gram, customer_id)
) WITHOUT ROWID;
INSERT OR IGNORE INTO customer_name_grams (gram, customer_id)
    SELECT lower(substr(c.name, p.n, 1)), c.id FROM customers c JOIN name_positions p ON p.n <= length(c.name);
INSERT OR IGNORE INTO customer_name_grams (gram, customer_id)
    SELECT lower(substr(c.name, p.n, 2)), c.id FROM customers c JOIN name_positions p ON p.n < length(c.name);

CREATE TRIGGER customer_name_grams_insert AFTER INSERT ON customers
BEGIN
    INSERT OR IGNORE INTO customer_name_grams (gram, customer_id)
        SELECT lower(substr(NEW.name, n, 1)), NEW.id FROM name_positions WHERE n <= length(NEW.name);
    INSERT OR IGNORE INTO customer_name_grams (gram, customer_id)
        SELECT lower(substr(NEW.name, n, 2)), NEW.id FROM name_positions WHERE n < length(NEW.name);
END;
CREATE TRIGGER customer_name_grams_update AFTER UPDATE OF name ON customers
WHEN OLD.name IS NOT NEW.name
BEGIN
    DELETE FROM customer_name_grams WHERE customer_id = OLD.id
        AND gram IN (SELECT lower(substr(OLD.name, n, 1)) FROM name_positions WHERE n <= length(OLD.name)
                     UNION SELECT lower(substr(OLD.name, n, 2)) FROM name_positions WHERE n < length(OLD.name));
    INSERT OR IGNORE INTO customer_name_grams (gram, customer_id)
        SELECT lower(substr(NEW.name, n, 1)), NEW.id FROM name_positions WHERE n <= length(NEW.name);
    INSERT OR IGNORE INTO customer_name_grams (gram, customer_id)
        SELECT lower(substr(NEW.name, n, 2)), NEW.id FROM name_positions WHERE n < length(NEW.name);
END;
CREATE TRIGGER customer_name_grams_delete AFTER DELETE ON customers
BEGIN
    DELETE FROM customer_name_grams WHERE customer_id = OLD.id
        AND gram IN (SELECT lower(substr(OLD.name, n, 1)) FROM name_positions WHERE n <= length(OLD.name)
                     UNION SELECT lower(substr(OLD.name, n, 2)) FROM name_positions WHERE n < length(OLD.name));
END;
"#,
    // 12 (issue 12, advisors): a customer's own advisor (专属顾问), as
    // imported; the staff member a phone message is meant for, decided by
    // the tick (an action with `assign = "advisor"`); and whether a call
    // task went to the customer's advisor rather than by round robin, so
    // the round robin's turn skips it.
    r#"
ALTER TABLE customers ADD COLUMN advisor TEXT;
ALTER TABLE outreach ADD COLUMN assign_to TEXT;
ALTER TABLE call_tasks ADD COLUMN via_advisor INTEGER NOT NULL DEFAULT 0;
"#,
    // 13 (issue 12, onboarding and cancelling): a customer an import adds
    // waits for onboarding (`onboarding` = 1) until `recall onboard` places
    // them by their history or a tick judges them as genuinely new; a
    // message may expire (`expires_at`, from its action's `expires_after`);
    // and two statuses more: `cancelled` (by `recall cancel`, or replayed by
    // onboarding and never sendable) and `expired`. SQLite cannot alter a
    // CHECK, and rebuilding `outreach` would need foreign keys off: the
    // CHECK is widened in place (SQLite's documented writable_schema
    // procedure for loosening a constraint: every stored row still passes)
    // and the schema reloaded. The ALTERs change the schema cookie, so
    // other connections reload the schema too.
    r#"
ALTER TABLE customers ADD COLUMN onboarding INTEGER NOT NULL DEFAULT 0;
CREATE INDEX customers_onboarding ON customers (clinic_id) WHERE onboarding = 1;
ALTER TABLE outreach ADD COLUMN expires_at INTEGER;
CREATE INDEX outreach_expiring ON outreach (expires_at) WHERE status = 'queued' AND expires_at IS NOT NULL;
PRAGMA writable_schema = ON;
UPDATE sqlite_master
   SET sql = replace(sql, '''opted_out'', ''held_out'')', '''opted_out'', ''held_out'', ''cancelled'', ''expired'')')
 WHERE type = 'table' AND name = 'outreach';
PRAGMA writable_schema = RESET;
"#,
    // 14 (sender health): how each sender is doing, kept here so that every
    // dispatcher (the service, each `recall dispatch`), `recall status` and
    // `/healthz` see the same: `ok`, `failing` (its last attempts all
    // failed) or `paused` (the provider refused the credentials or the
    // account: nothing is sent but one probe at `probe_at`). `announced` is
    // the state the alert sender last told staff about: a notice is owed
    // while it differs from `state`.
    r#"
CREATE TABLE sender_health (
    sender TEXT PRIMARY KEY,
    state TEXT NOT NULL DEFAULT 'ok' CHECK (state IN ('ok', 'failing', 'paused')),
    failures INTEGER NOT NULL DEFAULT 0,
    code TEXT,
    last_error TEXT,
    since INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    probe_at INTEGER,
    probes INTEGER NOT NULL DEFAULT 0,
    announced TEXT NOT NULL DEFAULT 'ok'
);
"#,
    // 15 (issue 13, flapping and stale messages): a message whose action
    // cancels it when stale (`stale = "cancel"`, the default for sms,
    // wechat and email) is not sent if, when it is due, its customer is in
    // another pool than the one it was queued in, or visited since: it
    // becomes `stale`. Queued messages keep the default of their channel.
    // The status CHECK is widened in place as migration 13 did.
    r#"
ALTER TABLE outreach ADD COLUMN cancel_if_stale INTEGER NOT NULL DEFAULT 0;
UPDATE outreach SET cancel_if_stale = 1 WHERE status = 'queued' AND channel IN ('sms', 'wechat', 'email');
PRAGMA writable_schema = ON;
UPDATE sqlite_master
   SET sql = replace(sql, '''cancelled'', ''expired'')', '''cancelled'', ''expired'', ''stale'')')
 WHERE type = 'table' AND name = 'outreach';
PRAGMA writable_schema = RESET;
"#,
];
