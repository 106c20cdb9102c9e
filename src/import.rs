//! Importing a clinic's CRM/HIS exports: customers, visits, orders and
//! follow-ups from CSV files.
//!
//! Two stages, as everywhere: [`parse`] turns a file's text into typed rows
//! or a list of problems, each with its line (pure: no database); the store's
//! `import` upserts the rows by the clinic's own ids in one transaction and
//! reports rows that point at unknown customers. One bad row rejects the
//! whole file and leaves the database as it was. Re-importing the same file
//! changes nothing.
//!
//! Files may be UTF-8 (with or without a BOM) or GBK, as Excel in China
//! saves them. Headers may be the English ids below or their Chinese names.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

use chrono::NaiveDate;
use chrono_tz::Tz;

use crate::clock::{self, Timestamp};
use crate::diag;
use crate::model::{FollowupResult, Gender};

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Customers,
    Visits,
    Orders,
    Followups,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Customers => "customers",
            Kind::Visits => "visits",
            Kind::Orders => "orders",
            Kind::Followups => "followups",
        }
    }

    /// The columns of this kind: (id, Chinese and other accepted names, required).
    pub fn columns(self) -> &'static [Column] {
        match self {
            Kind::Customers => CUSTOMER_COLUMNS,
            Kind::Visits => VISIT_COLUMNS,
            Kind::Orders => ORDER_COLUMNS,
            Kind::Followups => FOLLOWUP_COLUMNS,
        }
    }
}

/// One column a file may have.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub id: &'static str,
    /// Other header names accepted for it (Chinese first).
    pub aliases: &'static [&'static str],
    pub required: bool,
    /// What goes in it, for the docs and errors.
    pub help: &'static str,
}

const fn col(
    id: &'static str,
    aliases: &'static [&'static str],
    required: bool,
    help: &'static str,
) -> Column {
    Column {
        id,
        aliases,
        required,
        help,
    }
}

pub const CUSTOMER_COLUMNS: &[Column] = &[
    col(
        "external_id",
        &["客户编号", "客户ID", "会员号", "customer_id"],
        true,
        "the CRM's customer id",
    ),
    col("name", &["姓名", "客户姓名"], false, "full name"),
    col(
        "phone",
        &["手机", "手机号", "电话", "mobile"],
        false,
        "mobile number",
    ),
    col("email", &["邮箱", "电子邮件"], false, "email address"),
    col(
        "wechat_openid",
        &["openid", "公众号openid"],
        false,
        "WeChat Official Account openid",
    ),
    col(
        "wecom_external_userid",
        &["企微ID", "external_userid", "企业微信ID"],
        false,
        "WeCom external_userid",
    ),
    col(
        "gender",
        &["性别", "sex"],
        false,
        "女/男/其他 or female/male/other",
    ),
    col(
        "birth_date",
        &["出生日期", "生日", "birthday"],
        false,
        "YYYY-MM-DD",
    ),
    col("city", &["城市", "所在城市"], false, "city"),
    col(
        "source_channel",
        &["来源", "来源渠道", "渠道", "source"],
        false,
        "where the customer came from",
    ),
    col("tags", &["标签"], false, "tags separated by , ; 、 or |"),
    col(
        "consent_sms",
        &["短信同意", "接收短信"],
        false,
        "是/否, yes/no, 1/0",
    ),
    col(
        "consent_phone",
        &["电话同意", "接收电话"],
        false,
        "是/否, yes/no, 1/0",
    ),
    col(
        "consent_wechat",
        &["微信同意", "接收微信"],
        false,
        "是/否, yes/no, 1/0",
    ),
    col(
        "consent_email",
        &["邮件同意", "接收邮件"],
        false,
        "是/否, yes/no, 1/0",
    ),
    col(
        "do_not_contact",
        &["勿扰", "免打扰", "dnc"],
        false,
        "是/否: never contact this customer",
    ),
    col(
        "first_seen",
        &["建档时间", "首次到院", "created_at"],
        false,
        "when the customer was first seen (default: now)",
    ),
];

pub const VISIT_COLUMNS: &[Column] = &[
    col(
        "external_id",
        &["到院编号", "就诊编号", "visit_id"],
        true,
        "the visit's id in the HIS",
    ),
    col(
        "customer_id",
        &["客户编号", "客户ID", "会员号"],
        true,
        "the customer's id (as in customers.csv)",
    ),
    col(
        "at",
        &["到院时间", "就诊时间", "时间", "date"],
        true,
        "date or date and time, clinic time",
    ),
    col("department", &["科室", "部门"], false, "department"),
    col("note", &["备注"], false, "free text"),
];

pub const ORDER_COLUMNS: &[Column] = &[
    col(
        "external_id",
        &["订单编号", "订单号", "order_id"],
        true,
        "the order's id",
    ),
    col(
        "customer_id",
        &["客户编号", "客户ID", "会员号"],
        true,
        "the customer's id (as in customers.csv)",
    ),
    col(
        "at",
        &["下单时间", "消费时间", "时间", "date"],
        true,
        "date or date and time, clinic time",
    ),
    col(
        "amount",
        &["金额", "消费金额", "实收金额"],
        true,
        "amount in yuan, e.g. 12800 or 12,800.50",
    ),
    col(
        "project",
        &["项目", "治疗项目"],
        false,
        "project / treatment",
    ),
    col("department", &["科室", "部门"], false, "department"),
];

pub const FOLLOWUP_COLUMNS: &[Column] = &[
    col(
        "external_id",
        &["回访编号", "followup_id"],
        true,
        "the follow-up's id",
    ),
    col(
        "customer_id",
        &["客户编号", "客户ID", "会员号"],
        true,
        "the customer's id (as in customers.csv)",
    ),
    col(
        "at",
        &["回访时间", "时间", "date"],
        true,
        "date or date and time, clinic time",
    ),
    col(
        "result",
        &["结果", "回访结果"],
        true,
        "顺畅/不顺畅/未接通/拒绝 or smooth/not_smooth/unreachable/refused",
    ),
    col(
        "staff",
        &["回访人", "员工", "顾问"],
        false,
        "who made the follow-up",
    ),
    col("note", &["备注", "内容"], false, "free text"),
];

/// One problem with one row (or the header, line 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// A customer row: only the columns the file has are set (`Some`); the
/// others are left as they are in the database.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CustomerIn {
    pub line: usize,
    pub external_id: String,
    pub name: Option<String>,
    pub phone: Option<Option<String>>,
    pub email: Option<Option<String>>,
    pub wechat_openid: Option<Option<String>>,
    pub wecom_external_userid: Option<Option<String>>,
    pub gender: Option<Option<Gender>>,
    pub birth_date: Option<Option<NaiveDate>>,
    pub city: Option<Option<String>>,
    pub source_channel: Option<Option<String>>,
    pub tags: Option<Vec<String>>,
    pub consent: [Option<bool>; 4],
    pub do_not_contact: Option<bool>,
    pub first_seen: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisitIn {
    pub line: usize,
    pub external_id: String,
    pub customer: String,
    pub at: Timestamp,
    pub department: Option<String>,
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderIn {
    pub line: usize,
    pub external_id: String,
    pub customer: String,
    pub at: Timestamp,
    pub amount_cents: i64,
    pub project: Option<String>,
    pub department: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowupIn {
    pub line: usize,
    pub external_id: String,
    pub customer: String,
    pub at: Timestamp,
    pub result: FollowupResult,
    pub staff: Option<String>,
    pub note: Option<String>,
}

/// A parsed file.
#[derive(Debug, Clone, PartialEq)]
pub enum Rows {
    Customers(Vec<CustomerIn>),
    Visits(Vec<VisitIn>),
    Orders(Vec<OrderIn>),
    Followups(Vec<FollowupIn>),
}

impl Rows {
    pub fn len(&self) -> usize {
        match self {
            Rows::Customers(r) => r.len(),
            Rows::Visits(r) => r.len(),
            Rows::Orders(r) => r.len(),
            Rows::Followups(r) => r.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How the file's bytes are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Encoding {
    /// UTF-8 if the bytes are valid UTF-8, GBK otherwise.
    Auto,
    Utf8,
    Gbk,
}

/// Reads a file as text.
pub fn read(path: &Path, encoding: Encoding) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    decode(&bytes, encoding).map_err(|why| format!("{}: {why}", path.display()))
}

/// Decodes bytes as UTF-8 (a BOM is dropped) or GBK.
pub fn decode(bytes: &[u8], encoding: Encoding) -> Result<String, String> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let gbk = || {
        let (text, _, bad) = encoding_rs::GBK.decode(bytes);
        if bad {
            Err(
                "the file is neither UTF-8 nor GBK: save it from Excel as \"CSV UTF-8\""
                    .to_string(),
            )
        } else {
            Ok(text.into_owned())
        }
    };
    match encoding {
        Encoding::Utf8 => String::from_utf8(bytes.to_vec()).map_err(|e| {
            format!(
                "not valid UTF-8 at byte {}: try --encoding gbk",
                e.utf8_error().valid_up_to()
            )
        }),
        Encoding::Gbk => gbk(),
        Encoding::Auto => match std::str::from_utf8(bytes) {
            Ok(text) => Ok(text.to_string()),
            Err(_) => gbk(),
        },
    }
}

/// Parses a file of `kind`. Every problem is reported, each with its line.
pub fn parse(kind: Kind, text: &str, tz: Tz) -> Result<Rows, Vec<RowError>> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            return Err(vec![RowError {
                line: 1,
                message: format!("cannot read the header: {e}"),
            }]);
        }
    };
    let columns = kind.columns();
    let (index, mut errors) = map_headers(&headers, columns);
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut rows = Rows::empty(kind);
    let mut seen: HashMap<String, usize> = HashMap::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line() as usize);
                errors.push(RowError {
                    line,
                    message: format!("cannot read the row: {e}"),
                });
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line() as usize);
        if record.iter().all(str::is_empty) {
            continue;
        }
        let cell = Cell {
            record: &record,
            index: &index,
            line,
        };
        let before = errors.len();
        let id = cell.required("external_id", &mut errors);
        if let Some(id) = &id
            && let Some(first) = seen.insert(id.clone(), line)
        {
            errors.push(RowError {
                line,
                message: format!("id `{id}` appears twice (lines {first} and {line})"),
            });
        }
        match &mut rows {
            Rows::Customers(list) => {
                let row = customer(&cell, id.unwrap_or_default(), tz, &mut errors);
                if errors.len() == before {
                    list.push(row);
                }
            }
            Rows::Visits(list) => {
                let customer = cell.required("customer_id", &mut errors);
                let at = cell.time("at", tz, &mut errors);
                if let (Some(external_id), Some(customer), Some(at)) = (id, customer, at)
                    && errors.len() == before
                {
                    list.push(VisitIn {
                        line,
                        external_id,
                        customer,
                        at,
                        department: cell.text("department"),
                        note: cell.text("note"),
                    });
                }
            }
            Rows::Orders(list) => {
                let customer = cell.required("customer_id", &mut errors);
                let at = cell.time("at", tz, &mut errors);
                let amount = cell.amount("amount", &mut errors);
                if let (Some(external_id), Some(customer), Some(at), Some(amount_cents)) =
                    (id, customer, at, amount)
                    && errors.len() == before
                {
                    list.push(OrderIn {
                        line,
                        external_id,
                        customer,
                        at,
                        amount_cents,
                        project: cell.text("project"),
                        department: cell.text("department"),
                    });
                }
            }
            Rows::Followups(list) => {
                let customer = cell.required("customer_id", &mut errors);
                let at = cell.time("at", tz, &mut errors);
                let result = cell.required("result", &mut errors).and_then(|r| match followup_result(&r) {
                    Some(result) => Some(result),
                    None => {
                        errors.push(RowError {
                            line,
                            message: format!("result `{r}` is not one of 顺畅, 不顺畅, 未接通, 拒绝 (smooth, not_smooth, unreachable, refused)"),
                        });
                        None
                    }
                });
                if let (Some(external_id), Some(customer), Some(at), Some(result)) =
                    (id, customer, at, result)
                    && errors.len() == before
                {
                    list.push(FollowupIn {
                        line,
                        external_id,
                        customer,
                        at,
                        result,
                        staff: cell.text("staff"),
                        note: cell.text("note"),
                    });
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(rows)
    } else {
        Err(errors)
    }
}

impl Rows {
    fn empty(kind: Kind) -> Rows {
        match kind {
            Kind::Customers => Rows::Customers(Vec::new()),
            Kind::Visits => Rows::Visits(Vec::new()),
            Kind::Orders => Rows::Orders(Vec::new()),
            Kind::Followups => Rows::Followups(Vec::new()),
        }
    }
}

/// Column id → position in the file; unknown and missing columns are errors.
fn map_headers(
    headers: &csv::StringRecord,
    columns: &[Column],
) -> (BTreeMap<&'static str, usize>, Vec<RowError>) {
    let mut index = BTreeMap::new();
    let mut errors = Vec::new();
    let normal = |s: &str| s.trim().trim_start_matches('\u{feff}').to_lowercase();
    for (position, header) in headers.iter().enumerate() {
        let h = normal(header);
        match columns
            .iter()
            .find(|c| c.id == h || c.aliases.iter().any(|a| normal(a) == h))
        {
            Some(column) => {
                if index.insert(column.id, position).is_some() {
                    errors.push(RowError {
                        line: 1,
                        message: format!("column `{header}` is given twice (as `{}`)", column.id),
                    });
                }
            }
            None => {
                let names: Vec<&str> = columns
                    .iter()
                    .flat_map(|c| std::iter::once(c.id).chain(c.aliases.iter().copied()))
                    .collect();
                let hint = diag::nearest(header, names.iter().copied())
                    .map(|n| format!("; did you mean `{n}`?"))
                    .unwrap_or_default();
                errors.push(RowError {
                    line: 1,
                    message: format!(
                        "unknown column `{header}`{hint} (the columns are listed in docs/import.md)"
                    ),
                });
            }
        }
    }
    for column in columns.iter().filter(|c| c.required) {
        if !index.contains_key(column.id) {
            errors.push(RowError {
                line: 1,
                message: format!(
                    "the column `{}` ({}) is missing: {}",
                    column.id,
                    column.aliases.first().unwrap_or(&""),
                    column.help
                ),
            });
        }
    }
    (index, errors)
}

/// One row's cells by column id.
struct Cell<'a> {
    record: &'a csv::StringRecord,
    index: &'a BTreeMap<&'static str, usize>,
    line: usize,
}

impl Cell<'_> {
    /// The cell, if the file has the column (empty text is `Some("")`).
    fn raw(&self, column: &str) -> Option<&str> {
        self.index.get(column).and_then(|i| self.record.get(*i))
    }

    /// Non-empty text, or `None`.
    fn text(&self, column: &str) -> Option<String> {
        self.raw(column)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }

    /// For columns that update a field: `None` if the file lacks the
    /// column, `Some(None)` if the cell is empty (clears the field).
    fn optional(&self, column: &str) -> Option<Option<String>> {
        self.raw(column)
            .map(|s| (!s.is_empty()).then(|| s.to_string()))
    }

    fn required(&self, column: &str, errors: &mut Vec<RowError>) -> Option<String> {
        let value = self.text(column);
        if value.is_none() {
            errors.push(RowError {
                line: self.line,
                message: format!("`{column}` is empty: every row needs it"),
            });
        }
        value
    }

    fn time(&self, column: &str, tz: Tz, errors: &mut Vec<RowError>) -> Option<Timestamp> {
        let text = self.required(column, errors)?;
        match parse_time(&text, tz) {
            Some(at) => Some(at),
            None => {
                errors.push(RowError {
                    line: self.line,
                    message: format!(
                        "`{column}` = `{text}` is not a date: write 2026-03-01 or 2026-03-01 14:30"
                    ),
                });
                None
            }
        }
    }

    fn amount(&self, column: &str, errors: &mut Vec<RowError>) -> Option<i64> {
        let text = self.required(column, errors)?;
        match parse_amount(&text) {
            Some(cents) if cents >= 0 => Some(cents),
            Some(_) => {
                errors.push(RowError {
                    line: self.line,
                    message: format!(
                        "`{column}` = `{text}` is negative: refunds are not imported as orders"
                    ),
                });
                None
            }
            None => {
                errors.push(RowError {
                    line: self.line,
                    message: format!(
                        "`{column}` = `{text}` is not an amount in yuan, like 12800 or 12,800.50"
                    ),
                });
                None
            }
        }
    }

    fn flag(&self, column: &str, errors: &mut Vec<RowError>) -> Option<bool> {
        let text = self.text(column)?;
        let value = parse_flag(&text);
        if value.is_none() {
            errors.push(RowError {
                line: self.line,
                message: format!("`{column}` = `{text}` is not yes or no (是/否, 1/0)"),
            });
        }
        value
    }
}

fn customer(
    cell: &Cell<'_>,
    external_id: String,
    tz: Tz,
    errors: &mut Vec<RowError>,
) -> CustomerIn {
    let line = cell.line;
    let gender = cell.optional("gender").map(|g| {
        g.and_then(|g| {
            let parsed = parse_gender(&g);
            if parsed.is_none() {
                errors.push(RowError {
                    line,
                    message: format!("`gender` = `{g}` is not 女, 男, 其他 (female, male, other)"),
                });
            }
            parsed
        })
    });
    let birth_date = cell.optional("birth_date").map(|b| {
        b.and_then(|b| {
            let parsed = parse_date(&b);
            if parsed.is_none() {
                errors.push(RowError {
                    line,
                    message: format!("`birth_date` = `{b}` is not a date like 1990-06-15"),
                });
            }
            parsed
        })
    });
    let first_seen = cell.text("first_seen").and_then(|t| {
        let parsed = parse_time(&t, tz);
        if parsed.is_none() {
            errors.push(RowError {
                line,
                message: format!("`first_seen` = `{t}` is not a date"),
            });
        }
        parsed
    });
    CustomerIn {
        line,
        external_id,
        name: cell.raw("name").map(str::to_string),
        phone: cell
            .optional("phone")
            .map(|p| p.map(|p| p.replace([' ', '-'], ""))),
        email: cell.optional("email"),
        wechat_openid: cell.optional("wechat_openid"),
        wecom_external_userid: cell.optional("wecom_external_userid"),
        gender,
        birth_date,
        city: cell.optional("city"),
        source_channel: cell.optional("source_channel"),
        tags: cell.raw("tags").map(|t| {
            t.split([',', ';', '，', '；', '、', '|'])
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect()
        }),
        consent: [
            cell.flag("consent_sms", errors),
            cell.flag("consent_phone", errors),
            cell.flag("consent_wechat", errors),
            cell.flag("consent_email", errors),
        ],
        do_not_contact: cell.flag("do_not_contact", errors),
        first_seen,
    }
}

/// Dates and times as CRMs export them, in clinic time.
pub fn parse_time(text: &str, tz: Tz) -> Option<Timestamp> {
    let text = text.trim().replace('/', "-");
    if let Ok(at) = clock::parse_time(&text, tz) {
        return Some(at.timestamp());
    }
    // 2026-3-1 and 2026-3-1 9:05: pad the parts.
    let (date, time) = text
        .split_once(' ')
        .map_or((text.as_str(), None), |(d, t)| (d, Some(t)));
    let date = parse_date(date)?;
    let time = match time {
        None => chrono::NaiveTime::MIN,
        Some(t) => chrono::NaiveTime::parse_from_str(t.trim(), "%H:%M:%S")
            .or_else(|_| chrono::NaiveTime::parse_from_str(t.trim(), "%H:%M"))
            .ok()?,
    };
    clock::local_to_utc(date.and_time(time), tz).map(|t| t.timestamp())
}

fn parse_date(text: &str) -> Option<NaiveDate> {
    let text = text.trim().replace('/', "-");
    let mut parts = text.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    NaiveDate::from_ymd_opt(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)
}

/// Yuan to cents: "12800", "12,800.50", "¥12800", "12800元".
pub fn parse_amount(text: &str) -> Option<i64> {
    let cleaned: String = text
        .trim()
        .trim_start_matches(['¥', '￥'])
        .trim_end_matches('元')
        .chars()
        .filter(|c| *c != ',' && *c != '，')
        .collect();
    let (negative, digits) = match cleaned.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, cleaned.as_str()),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() || !whole.chars().all(|c| c.is_ascii_digit()) || fraction.len() > 2 {
        return None;
    }
    if !fraction.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let cents = whole.parse::<i64>().ok()?.checked_mul(100)?
        + format!("{fraction:0<2}").parse::<i64>().ok()?;
    Some(if negative { -cents } else { cents })
}

fn parse_flag(text: &str) -> Option<bool> {
    match text.trim().to_lowercase().as_str() {
        "1" | "yes" | "y" | "true" | "是" | "同意" | "有" => Some(true),
        "0" | "no" | "n" | "false" | "否" | "不同意" | "无" => Some(false),
        _ => None,
    }
}

fn parse_gender(text: &str) -> Option<Gender> {
    match text.trim().to_lowercase().as_str() {
        "女" | "female" | "f" => Some(Gender::Female),
        "男" | "male" | "m" => Some(Gender::Male),
        "其他" | "other" => Some(Gender::Other),
        _ => None,
    }
}

fn followup_result(text: &str) -> Option<FollowupResult> {
    match text.trim().to_lowercase().as_str() {
        "smooth" | "顺畅" | "正常" | "跟进顺畅" => Some(FollowupResult::Smooth),
        "not_smooth" | "不顺畅" | "跟进不顺畅" => Some(FollowupResult::NotSmooth),
        "unreachable" | "未接通" | "联系不上" | "无人接听" => {
            Some(FollowupResult::Unreachable)
        }
        "refused" | "拒绝" | "拒接" => Some(FollowupResult::Refused),
        _ => None,
    }
}

/// The columns of every kind as the markdown of `docs/import.md`.
pub fn columns_markdown() -> String {
    let mut text = String::new();
    for kind in [Kind::Customers, Kind::Visits, Kind::Orders, Kind::Followups] {
        text.push_str(&format!(
            "### {}\n\n| column | also accepted | required | what |\n|---|---|---|---|\n",
            kind.as_str()
        ));
        for c in kind.columns() {
            text.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                c.id,
                c.aliases.join(", "),
                if c.required { "yes" } else { "" },
                c.help
            ));
        }
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const TZ: Tz = chrono_tz::Asia::Shanghai;

    #[test]
    fn chinese_headers_and_values_are_understood() {
        let text = "客户编号,姓名,手机,性别,出生日期,标签,短信同意\nC1,王丽,138 1234 5678,女,1990/6/15,vip、玻尿酸,是\n";
        let Rows::Customers(rows) = parse(Kind::Customers, text, TZ).unwrap() else {
            panic!()
        };
        let c = &rows[0];
        assert_eq!(c.external_id, "C1");
        assert_eq!(c.phone, Some(Some("13812345678".into())));
        assert_eq!(c.gender, Some(Some(Gender::Female)));
        assert_eq!(c.birth_date, Some(NaiveDate::from_ymd_opt(1990, 6, 15)));
        assert_eq!(c.tags, Some(vec!["vip".to_string(), "玻尿酸".to_string()]));
        assert_eq!(c.consent, [Some(true), None, None, None]);
        assert_eq!(c.email, None, "columns the file lacks stay untouched");
    }

    #[test]
    fn every_bad_row_is_reported_with_its_line() {
        let text = "订单编号,客户编号,下单时间,金额\nO1,C1,2026-03-01,12800\nO2,,2026-03-02,100\nO3,C1,March 3,100\nO4,C1,2026-03-04,-50\nO1,C1,2026-03-05,1\n";
        let errors = parse(Kind::Orders, text, TZ).unwrap_err();
        let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            shown,
            [
                "line 3: `customer_id` is empty: every row needs it",
                "line 4: `at` = `March 3` is not a date: write 2026-03-01 or 2026-03-01 14:30",
                "line 5: `amount` = `-50` is negative: refunds are not imported as orders",
                "line 6: id `O1` appears twice (lines 2 and 6)",
            ]
        );
    }

    #[test]
    fn unknown_and_missing_columns_are_named() {
        let errors = parse(Kind::Visits, "到院编号,客户编号,科式\nV1,C1,皮肤科\n", TZ).unwrap_err();
        let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert!(
            shown[0].contains("unknown column `科式`; did you mean `科室`?"),
            "{shown:?}"
        );
        assert!(
            shown[1].contains("the column `at` (到院时间) is missing"),
            "{shown:?}"
        );
    }

    #[test]
    fn amounts_are_yuan_with_the_usual_decorations() {
        assert_eq!(parse_amount("12800"), Some(1_280_000));
        assert_eq!(parse_amount("12,800.5"), Some(1_280_050));
        assert_eq!(parse_amount("¥99.99"), Some(9_999));
        assert_eq!(parse_amount("300元"), Some(30_000));
        assert_eq!(parse_amount("1.234"), None);
        assert_eq!(parse_amount("abc"), None);
    }

    #[test]
    fn gbk_files_are_decoded() {
        let (bytes, _, _) = encoding_rs::GBK.encode("客户编号,姓名\nC1,王丽\n");
        let text = decode(&bytes, Encoding::Auto).unwrap();
        assert!(text.contains("王丽"));
        assert!(decode(&bytes, Encoding::Utf8).is_err());
        assert_eq!(decode(b"\xEF\xBB\xBFa,b", Encoding::Auto).unwrap(), "a,b");
    }

    #[test]
    fn times_are_clinic_local() {
        let at = parse_time("2026/3/1 9:05", TZ).unwrap();
        assert_eq!(clock::format_local(at, TZ), "2026-03-01 09:05");
    }

    #[test]
    fn docs_list_every_column() {
        let docs = include_str!("../docs/import.md");
        assert!(
            docs.contains(&columns_markdown()),
            "docs/import.md is out of date: regenerate its tables with `recall import --columns`"
        );
    }
}
