use super::*;
use crate::base::i18n::t;

fn sample() -> Rows {
    let mut rows = Rows::new(&["pool", "customers", "note"]);
    rows.push(vec![
        Cell::Term {
            key: "new".into(),
            text: "新客池".into(),
        },
        Cell::Int(12),
        Cell::Text("新客, \"首诊\"".into()),
    ]);
    rows.push(vec![
        Cell::Term {
            key: "churned".into(),
            text: "流失池".into(),
        },
        Cell::Int(-3),
        Cell::Empty,
    ]);
    rows
}

fn write(format: Format, lang: Lang, bom: bool, rows: Rows) -> String {
    let output = Output {
        format,
        path: None,
        bom,
        lang,
    };
    let mut out = Vec::new();
    let book = Book::one(Section::new("sample", "样例".into(), rows).cut_at(20));
    output.text(&book, format, &mut out, false).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn csv_starts_with_a_bom_unless_turned_off_and_quotes_what_needs_quoting() {
    let zh = write(Format::Csv, Lang::Zh, true, sample());
    assert_eq!(
        zh,
        "\u{feff}pool,customers,note\n新客池,12,\"新客, \"\"首诊\"\"\"\n流失池,-3,\n"
    );
    let en = write(Format::Csv, Lang::En, false, sample());
    assert_eq!(
        en,
        "pool,customers,note\nnew,12,\"新客, \"\"首诊\"\"\"\nchurned,-3,\n"
    );
}

#[test]
fn csv_headers_are_in_the_language_asked_and_keys_under_english() {
    let rows = || Rows::keyed(Lang::Zh, &[("messages", t!("report.recall.messages"))]);
    let zh = write(Format::Csv, Lang::Zh, false, rows());
    assert_eq!(zh, "消息数\n");
    let rows = Rows::keyed(Lang::En, &[("messages", t!("report.recall.messages"))]);
    assert_eq!(write(Format::Csv, Lang::En, false, rows), "messages\n");
}

#[test]
fn formula_cells_are_neutralised_but_numbers_stay_numbers() {
    let mut rows = Rows::new(&["name", "change", "rate"]);
    rows.push(vec![
        Cell::Text("=HYPERLINK(\"http://evil\",\"x\")".into()),
        Cell::Delta(-2),
        Cell::Percent(-0.125),
    ]);
    rows.push(vec![Cell::Text("-2+3".into()), Cell::Int(-5), Cell::Empty]);
    let csv = write(Format::Csv, Lang::Zh, false, rows);
    assert_eq!(
        csv,
        "name,change,rate\n\"'=HYPERLINK(\"\"http://evil\"\",\"\"x\"\")\",-2,-12.50%\n'-2+3,-5,\n"
    );
}

#[test]
fn json_keeps_keys_and_numbers() {
    let value: serde_json::Value =
        serde_json::from_str(&write(Format::Json, Lang::Zh, true, sample())).unwrap();
    assert_eq!(value[0]["pool"], "new");
    assert_eq!(value[0]["customers"], 12);
    assert_eq!(value[0]["note"], "新客, \"首诊\"");
    assert_eq!(value[1]["note"], serde_json::Value::Null);
    let mut rates = Rows::new(&["rate", "cost"]);
    rates.push(vec![Cell::Percent(2.0 / 3.0), Cell::yuan_milli(2200)]);
    let value: serde_json::Value =
        serde_json::from_str(&write(Format::Json, Lang::En, false, rates)).unwrap();
    assert_eq!(value[0]["rate"], 0.6667);
    assert_eq!(value[0]["cost"], 2.2);
}

#[test]
fn tables_show_every_row_in_the_readers_words_and_escape_controls() {
    let table = write(Format::Table, Lang::Zh, true, sample());
    assert!(
        table.contains("流失池") && table.contains("新客"),
        "{table}"
    );
    let mut rows = Rows::new(&["name"]);
    rows.push(vec![Cell::Text("王\x1b]0;evil\x07丽\x1b[31m".into())]);
    let table = write(Format::Table, Lang::Zh, true, rows);
    assert!(
        !table.contains('\x1b') && !table.contains('\x07'),
        "{table:?}"
    );
    assert!(table.contains("王\\x1b]0;evil\\x07丽"), "{table}");
}

#[test]
fn several_sections_need_a_folder_as_csv_and_a_file_as_xlsx() {
    let book = Book {
        title: None,
        notes: Vec::new(),
        sections: vec![
            Section::new("a", "A".into(), sample()),
            Section::new("b", "B".into(), sample()),
        ],
    };
    let output = |format, path: Option<PathBuf>| Output {
        format,
        path,
        bom: true,
        lang: Lang::Zh,
    };
    assert!(matches!(
        output(Format::Csv, None).write(&book),
        Err(OutputError::SeveralSections(keys)) if keys == ["a", "b"]
    ));
    assert!(matches!(
        output(Format::Xlsx, None).write(&book),
        Err(OutputError::NeedsFile)
    ));
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("report");
    assert_eq!(
        output(Format::Csv, Some(folder.clone()))
            .write(&book)
            .unwrap(),
        Written::Files(folder.clone(), 2)
    );
    let a = std::fs::read(folder.join("a.csv")).unwrap();
    assert!(a.starts_with(csv::BOM));
    let file = dir.path().join("r.xlsx");
    output(Format::Xlsx, Some(file.clone()))
        .write(&book)
        .unwrap();
    let bytes = std::fs::read(&file).unwrap();
    assert!(bytes.starts_with(b"PK"), "a zip file");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "readable by its owner only: {mode:o}");
}

#[test]
fn formats_follow_file_names() {
    assert_eq!(
        Format::from_path(Path::new("统计表.XLSX")),
        Some(Format::Xlsx)
    );
    assert_eq!(Format::from_path(Path::new("a.csv")), Some(Format::Csv));
    assert_eq!(Format::from_path(Path::new("a.txt")), None);
}
