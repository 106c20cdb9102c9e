//! The columns each kind of file may have, by their English ids and the
//! Chinese (and other) names clinics' exports use, and the mapping of a
//! file's header onto them.

use std::collections::BTreeMap;

use super::{QUOTE_CHARS, RowError, quote};
use crate::base::diag;
use crate::base::i18n::t;

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Customers,
    Visits,
    Orders,
    Followups,
}

impl Kind {
    /// What the rows are, for people: `visits`, 到院记录.
    pub fn name(self) -> crate::base::i18n::Text {
        match self {
            Kind::Customers => t!("import.kind.customers"),
            Kind::Visits => t!("import.kind.visits"),
            Kind::Orders => t!("import.kind.orders"),
            Kind::Followups => t!("import.kind.followups"),
        }
    }

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

/// How a visit, order or follow-up names its customer.
const CUSTOMER_ID: Column = col(
    "customer_id",
    &[
        "客户编号",
        "客户ID",
        "会员号",
        "会员卡号",
        "会员编号",
        "档案号",
        "病历号",
    ],
    true,
    "the customer's id (as in customers.csv)",
);

const DEPARTMENT: Column = col(
    "department",
    &["科室", "部门", "就诊科室"],
    false,
    "department",
);

pub const CUSTOMER_COLUMNS: &[Column] = &[
    col(
        "external_id",
        &[
            "客户编号",
            "客户ID",
            "会员号",
            "会员卡号",
            "会员编号",
            "档案号",
            "病历号",
            "customer_id",
        ],
        true,
        "the CRM's customer id",
    ),
    col(
        "name",
        &["姓名", "客户姓名", "会员姓名", "顾客姓名"],
        false,
        "full name",
    ),
    col(
        "phone",
        &[
            "手机",
            "手机号",
            "手机号码",
            "电话",
            "联系电话",
            "移动电话",
            "mobile",
        ],
        false,
        "mobile number",
    ),
    col(
        "email",
        &["邮箱", "电子邮件", "电子邮箱"],
        false,
        "email address",
    ),
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
        &["来源", "来源渠道", "客户来源", "渠道", "source"],
        false,
        "where the customer came from",
    ),
    col(
        "tags",
        &["标签", "客户标签"],
        false,
        "tags separated by , ; 、 or |",
    ),
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
        "advisor",
        &[
            "专属顾问",
            "顾问",
            "所属顾问",
            "归属顾问",
            "责任顾问",
            "客户顾问",
        ],
        false,
        "the customer's own advisor (专属顾问), as named in `staff` of the phone_tasks sender",
    ),
    col(
        "first_seen",
        &["建档时间", "建档日期", "首次到院", "created_at"],
        false,
        "when the customer was first seen (default: now)",
    ),
];

pub const VISIT_COLUMNS: &[Column] = &[
    col(
        "external_id",
        &["到院编号", "就诊编号", "到诊编号", "就诊单号", "visit_id"],
        true,
        "the visit's id in the HIS",
    ),
    CUSTOMER_ID,
    col(
        "at",
        &[
            "到院时间",
            "就诊时间",
            "到诊时间",
            "到店时间",
            "到院日期",
            "就诊日期",
            "时间",
            "date",
        ],
        true,
        "date or date and time, clinic time",
    ),
    DEPARTMENT,
    col("note", &["备注"], false, "free text"),
];

pub const ORDER_COLUMNS: &[Column] = &[
    col(
        "external_id",
        &["订单编号", "订单号", "收费单号", "消费单号", "order_id"],
        true,
        "the order's id",
    ),
    CUSTOMER_ID,
    col(
        "at",
        &[
            "下单时间",
            "消费时间",
            "收费时间",
            "消费日期",
            "时间",
            "date",
        ],
        true,
        "date or date and time, clinic time",
    ),
    col(
        "amount",
        &["金额", "消费金额", "实收金额", "实付金额", "成交金额"],
        true,
        "amount in yuan, e.g. 12800 or 12,800.50",
    ),
    col(
        "project",
        &["项目", "治疗项目", "项目名称", "消费项目"],
        false,
        "project / treatment",
    ),
    DEPARTMENT,
];

pub const FOLLOWUP_COLUMNS: &[Column] = &[
    col(
        "external_id",
        &["回访编号", "回访单号", "followup_id"],
        true,
        "the follow-up's id",
    ),
    CUSTOMER_ID,
    col(
        "at",
        &["回访时间", "回访日期", "时间", "date"],
        true,
        "date or date and time, clinic time",
    ),
    col(
        "result",
        &["结果", "回访结果", "回访状态"],
        true,
        "顺畅/不顺畅/未接通/拒绝 or smooth/not_smooth/unreachable/refused",
    ),
    col(
        "staff",
        &["回访人", "回访人员", "员工", "顾问", "客服"],
        false,
        "who made the follow-up",
    ),
    col(
        "note",
        &["备注", "内容", "回访内容", "回访记录"],
        false,
        "free text",
    ),
];

/// A header as compared with the names: without spaces around, a BOM, or a
/// unit in brackets after it (`实收金额(元)`, `金额（元）`), lower case.
fn normal_header(header: &str) -> String {
    let mut h = header.trim().trim_start_matches('\u{feff}').trim();
    for (open, close) in [('(', ')'), ('（', '）')] {
        if let Some(rest) = h.strip_suffix(close)
            && let Some(at) = rest.rfind(open)
            && at > 0
        {
            h = rest[..at].trim_end();
        }
    }
    h.to_lowercase()
}

/// Column id → position in the file; unknown and missing columns are errors.
pub(super) fn map_headers<'a>(
    headers: impl Iterator<Item = &'a str>,
    columns: &[Column],
) -> (BTreeMap<&'static str, usize>, Vec<RowError>) {
    let mut index = BTreeMap::new();
    let mut errors = Vec::new();
    let normal = normal_header;
    for (position, header) in headers.enumerate() {
        let h = normal(header);
        match columns
            .iter()
            .find(|c| c.id == h || c.aliases.iter().any(|a| normal(a) == h))
        {
            Some(column) => {
                if index.insert(column.id, position).is_some() {
                    errors.push(RowError {
                        line: 1,
                        message: t!(
                            "import.err.column_twice",
                            header = quote(header),
                            column = column.id
                        ),
                    });
                }
            }
            None => {
                let names: Vec<&str> = columns
                    .iter()
                    .flat_map(|c| std::iter::once(c.id).chain(c.aliases.iter().copied()))
                    .collect();
                let nearest = (header.chars().count() <= QUOTE_CHARS)
                    .then(|| diag::nearest(header, names.iter().copied()))
                    .flatten();
                let header = quote(header);
                errors.push(RowError {
                    line: 1,
                    message: match nearest {
                        Some(name) => t!("import.err.unknown_column_near", header, name),
                        None => t!("import.err.unknown_column", header),
                    },
                });
            }
        }
    }
    for column in columns.iter().filter(|c| c.required) {
        if !index.contains_key(column.id) {
            errors.push(RowError {
                line: 1,
                message: t!(
                    "import.err.missing_column",
                    column = column.id,
                    alias = column.aliases.first().unwrap_or(&""),
                    help = column.help
                ),
            });
        }
    }
    (index, errors)
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
