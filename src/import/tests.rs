//! Parsing and decoding import files, as specs.

use super::*;
use crate::base::clock;

const TZ: Tz = chrono_tz::Asia::Shanghai;
const NOW: chrono::DateTime<chrono::Utc> = chrono::DateTime::UNIX_EPOCH;

/// Every row of a text, or every problem (the header's, or the rows').
fn parse(kind: Kind, text: &str) -> Result<Vec<Row>, Vec<RowError>> {
    let input = from_bytes(text.as_bytes().to_vec(), Encoding::Auto).unwrap();
    let reader = match Reader::new(input, kind, TZ, NOW) {
        Ok(reader) => reader,
        Err(OpenError::Header(errors)) => return Err(errors),
        Err(e) => panic!("{e:?}"),
    };
    let (mut rows, mut errors) = (Vec::new(), Vec::new());
    for row in reader {
        match row {
            Ok(row) => rows.push(row),
            Err(e) => errors.extend(e),
        }
    }
    if errors.is_empty() {
        Ok(rows)
    } else {
        Err(errors)
    }
}

#[test]
fn chinese_headers_and_values_are_understood() {
    let text = "客户编号,姓名,手机,性别,出生日期,标签,短信同意\nC1,王丽,138 1234 5678,女,1990/6/15,vip、玻尿酸,是\n";
    let Row::Customer(c) = &parse(Kind::Customers, text).unwrap()[0] else {
        panic!()
    };
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
    let text = "订单编号,客户编号,下单时间,金额\r\nO1,C1,2026-03-01,12800\r\nO2,,2026-03-02,100\r\nO3,C1,March 3,100\r\nO4,C1,2026-03-04,-50\r\n\r\nO5,C1\r\nO6,C1,2026-03-06,\"12,800\"\r\n";
    let errors = parse(Kind::Orders, text).unwrap_err();
    let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        shown,
        [
            "line 3: `customer_id` is empty: every row needs it",
            "line 4: `at` = `March 3` is not a date: write 2026-03-01 or 2026-03-01 14:30",
            "line 5: `amount` = `-50` is negative: refunds are not imported as orders",
            "line 7: the row has 2 cells and the header 4: a row cut short, or a comma in a cell without quotes?",
        ]
    );
}

#[test]
fn unknown_and_missing_columns_are_named() {
    let errors = parse(Kind::Visits, "到院编号,客户编号,科式\nV1,C1,皮肤科\n").unwrap_err();
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

fn decode(bytes: &[u8], encoding: Encoding) -> Result<String, String> {
    let mut input = from_bytes(bytes.to_vec(), encoding)?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut input.text, &mut text).map_err(|e| e.to_string())?;
    Ok(text)
}

#[test]
fn gbk_files_are_decoded() {
    let (bytes, _, _) = encoding_rs::GBK.encode("客户编号,姓名\nC1,王丽\n");
    let text = decode(&bytes, Encoding::Auto).unwrap();
    assert!(text.contains("王丽"));
    assert_eq!(
        decode(&bytes, Encoding::Utf8).unwrap_err(),
        "not valid UTF-8 at byte 0: try --encoding gbk"
    );
    assert_eq!(decode(b"\xEF\xBB\xBFa,b", Encoding::Auto).unwrap(), "a,b");
    assert!(decode(b"\xFF\xFF\xFF", Encoding::Auto).is_err());
}

#[test]
fn a_long_gbk_file_decodes_across_blocks() {
    let line = "C1,王丽,备注里有中文\n";
    let text = format!("客户编号,姓名,备注\n{}", line.repeat(20_000));
    let (bytes, _, _) = encoding_rs::GBK.encode(&text);
    assert_eq!(decode(&bytes, Encoding::Gbk).unwrap(), text);
    // A character cut by a block of the UTF-8 check is still UTF-8.
    assert_eq!(decode(text.as_bytes(), Encoding::Utf8).unwrap(), text);
}

#[test]
fn errors_quote_at_most_a_few_characters() {
    let long = "x".repeat(100_000);
    let errors = parse(Kind::Visits, &format!("{long}\n")).unwrap_err();
    assert!(
        errors
            .iter()
            .all(|e| e.message.render(crate::base::i18n::Lang::En).len() < 200),
        "{errors:?}"
    );
    assert_eq!(quote("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
    assert_eq!(quote(&"好".repeat(50)).chars().count(), QUOTE_CHARS + 1);
}

#[test]
fn times_are_clinic_local() {
    let at = parse_time("2026/3/1 9:05", TZ, NOW).unwrap();
    assert_eq!(clock::format_local(at, TZ), "2026-03-01 09:05");
}

#[test]
fn docs_list_every_column() {
    let docs = include_str!("../../docs/import.md");
    assert!(
        docs.contains(&columns_markdown()),
        "docs/import.md is out of date: regenerate its tables with `recall import --columns`"
    );
}
