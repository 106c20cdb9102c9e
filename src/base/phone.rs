//! Phone numbers as people type them, read into E.164.
//!
//! Clinics store numbers the way staff typed them: `138 1234 5678`,
//! `+86-138-1234-5678`, `0086 13812345678`, `(415) 555-0016`, full-width
//! `１３８１２３４５６７８` from a Chinese input method, or with the country
//! code but no `+` (`86 13812345678`, `1-415-555-0016`). [`parse`] reads all
//! of these into one [`Phone`]: a country calling code and the national
//! significant number, from which every sender takes the form its provider
//! wants ([`Phone::e164`], [`Phone::digits`], [`Phone::national`]).
//!
//! Reading and judging are separate. [`parse`] fails only when no E.164
//! number can be formed at all (letters, no country code and no default,
//! too few or too many digits); [`Phone::check`] then says whether the
//! number fits its region's numbering plan: mainland China mobiles strictly
//! (11 digits, `1[3-9]`), North America by its plan, other regions by the
//! lengths their plans allow. A region not in the table is held only to
//! E.164's bounds.
//!
//! Pure: no I/O, no clock. Nothing here logs; callers mask numbers with
//! `base::mask` before they mention one.

use std::fmt;

/// A country calling code (`86`, `1`, `44`): one to three digits, never
/// starting with 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CountryCode(u16);

impl CountryCode {
    /// Mainland China.
    pub const CHINA: CountryCode = CountryCode(86);
    /// The North American Numbering Plan (US, Canada, much of the Caribbean).
    pub const NANP: CountryCode = CountryCode(1);

    /// A code as written in a setting: `"86"`, `"+44"`, `" 1 "`. `None` for
    /// anything else (`"UK"`, `"0044"`, `"1234"`).
    pub fn parse(text: &str) -> Option<CountryCode> {
        let digits = text.trim().trim_start_matches('+');
        let well_formed = (1..=3).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        well_formed
            .then(|| digits.parse().ok())
            .flatten()
            .map(CountryCode)
    }

    /// How many digits the code has.
    fn len(self) -> usize {
        self.to_string().len()
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A phone number: its country calling code and its national significant
/// number (the digits after the country code, without a trunk prefix such
/// as China's or Britain's leading 0).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Phone {
    country: CountryCode,
    national: String,
}

/// Why a typed number is not a phone number, or not a valid one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("the number is empty")]
    Empty,
    #[error("the number has characters other than digits, spaces, dashes, dots and brackets")]
    NotANumber,
    #[error("the number has no country code and no default country applies")]
    NoCountryCode,
    #[error("+{0} is not a country calling code")]
    UnknownCountryCode(String),
    #[error("the number has too few digits")]
    TooShort,
    #[error("the number has more than the 15 digits E.164 allows")]
    TooLong,
    #[error("not a mainland China mobile number (11 digits starting 13 to 19)")]
    NotChinaMobile,
    #[error("the number does not fit the numbering plan of +{0}")]
    WrongForRegion(CountryCode),
}

/// E.164 allows at most 15 digits, country code included.
const MAX_DIGITS: usize = 15;
/// No national number in service is shorter than 4 digits (Niue's).
const MIN_NATIONAL: usize = 4;

/// Reads a number as typed. Spaces, dashes, dots, slashes and brackets,
/// full-width or not, are ignored. A leading `+` or `00` (`011` in North
/// America) means the country code follows. Without one, `default` is the
/// country (a clinic's own): its trunk prefix is dropped (`0` in China and
/// Britain, `1` in North America, `8` in Russia), and a number that already
/// starts with that country's code (`86 13812345678`) is recognised rather
/// than given the code twice.
pub fn parse(typed: &str, default: Option<CountryCode>) -> Result<Phone, PhoneError> {
    let (plus, mut digits) = lex(typed)?;
    let international = plus
        || strip(&mut digits, "00")
        || (default == Some(CountryCode::NANP) && strip(&mut digits, "011"));
    let phone = if international {
        let (country, national) = split_country(&digits)?;
        Phone {
            country,
            national: without_written_trunk(country, national),
        }
    } else {
        let country = default.ok_or(PhoneError::NoCountryCode)?;
        Phone {
            country,
            national: national_of(country, &digits),
        }
    };
    if phone.national.len() < MIN_NATIONAL {
        return Err(PhoneError::TooShort);
    }
    if phone.country.len() + phone.national.len() > MAX_DIGITS {
        return Err(PhoneError::TooLong);
    }
    Ok(phone)
}

impl Phone {
    /// The country calling code.
    pub fn country(&self) -> CountryCode {
        self.country
    }

    /// The national significant number: `13812345678`, `7700900123`.
    pub fn national(&self) -> &str {
        &self.national
    }

    /// E.164: `+8613812345678`.
    pub fn e164(&self) -> String {
        format!("+{}{}", self.country, self.national)
    }

    /// E.164 without its `+`: `8613812345678`, the form some providers take
    /// for numbers abroad.
    pub fn digits(&self) -> String {
        format!("{}{}", self.country, self.national)
    }

    /// A mainland China mobile number (`+86 1[3-9]` and 9 more digits).
    pub fn is_china_mobile(&self) -> bool {
        self.country == CountryCode::CHINA && china_mobile(&self.national)
    }

    /// Whether the number fits its region's numbering plan.
    pub fn check(&self) -> Result<(), PhoneError> {
        let code = self.country.to_string();
        if SPARE_CODES.iter().any(|spare| code.starts_with(spare)) {
            return Err(PhoneError::UnknownCountryCode(code));
        }
        if fits_plan(self.country, &self.national) {
            return Ok(());
        }
        if self.country == CountryCode::CHINA && self.national.starts_with('1') {
            return Err(PhoneError::NotChinaMobile);
        }
        Err(PhoneError::WrongForRegion(self.country))
    }

    pub fn is_valid(&self) -> bool {
        self.check().is_ok()
    }
}

impl fmt::Display for Phone {
    /// E.164.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{}{}", self.country, self.national)
    }
}

/// The typed text as (whether it starts with `+`, its ASCII digits).
fn lex(typed: &str) -> Result<(bool, String), PhoneError> {
    let mut plus = false;
    let mut digits = String::new();
    for c in typed.trim().chars() {
        match c {
            '0'..='9' => digits.push(c),
            // Full-width digits, from a Chinese or Japanese input method.
            '０'..='９' => digits.push(char::from(b'0' + (c as u32 - '０' as u32) as u8)),
            '+' | '＋' if !plus && digits.is_empty() => plus = true,
            c if is_separator(c) => {}
            _ => return Err(PhoneError::NotANumber),
        }
    }
    if digits.is_empty() {
        return Err(PhoneError::Empty);
    }
    Ok((plus, digits))
}

/// What people put between digits: spaces, dashes, dots, slashes, brackets,
/// in their ASCII, full-width and typographic forms.
fn is_separator(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '-' | '.' | '/' | '(' | ')' | '[' | ']' | '\u{2010}'
                ..='\u{2015}' // hyphens and dashes
                | '\u{2212}' // minus sign
                | '\u{30FC}' // katakana long vowel mark, typed as a dash
                | '－'
                | '．'
                | '／'
                | '（'
                | '）'
                | '·'
        )
}

/// Removes `prefix` from the front of `digits`, saying whether it was there.
fn strip(digits: &mut String, prefix: &str) -> bool {
    if digits.starts_with(prefix) {
        digits.drain(..prefix.len());
        true
    } else {
        false
    }
}

/// The country code at the front of international digits and the rest.
/// Country codes are prefix-free: `1` and `7` stand alone, a few two-digit
/// codes are assigned, every other code has three digits.
fn split_country(digits: &str) -> Result<(CountryCode, &str), PhoneError> {
    if digits.starts_with('0') {
        return Err(PhoneError::UnknownCountryCode(
            digits.chars().take(3).collect(),
        ));
    }
    let len = if digits.starts_with('1') || digits.starts_with('7') {
        1
    } else if digits.len() >= 2 && TWO_DIGIT_CODES.contains(&&digits[..2]) {
        2
    } else {
        3
    };
    if digits.len() <= len {
        return Err(PhoneError::TooShort);
    }
    let country = CountryCode(digits[..len].parse().expect("ASCII digits"));
    Ok((country, &digits[len..]))
}

/// The national number of a number written with its country code: a trunk
/// prefix written after the code (`+44 (0)20 ...`) is dropped when the
/// number only fits its plan without it.
fn without_written_trunk(country: CountryCode, national: &str) -> String {
    if let Some(trunk) = trunk_prefix(country)
        && let Some(rest) = national.strip_prefix(trunk)
        && !fits_plan(country, national)
        && fits_plan(country, rest)
    {
        return rest.to_string();
    }
    national.to_string()
}

/// The national number of a number written without an international prefix
/// in `country`: as typed if it fits the plan; else without the trunk
/// prefix, or without the country's code typed in front, if that fits;
/// else, at a guess, without the trunk prefix.
fn national_of(country: CountryCode, digits: &str) -> String {
    if fits_plan(country, digits) {
        return digits.to_string();
    }
    let trunk = trunk_prefix(country);
    let without_trunk = |number: &str| -> Option<String> {
        let rest = number.strip_prefix(trunk?)?;
        fits_plan(country, rest).then(|| rest.to_string())
    };
    if let Some(national) = without_trunk(digits) {
        return national;
    }
    if let Some(rest) = digits.strip_prefix(country.to_string().as_str()) {
        if fits_plan(country, rest) {
            return rest.to_string();
        }
        if let Some(national) = without_trunk(rest) {
            return national;
        }
    }
    match trunk.and_then(|t| digits.strip_prefix(t)) {
        Some(rest) => rest.to_string(),
        None => digits.to_string(),
    }
}

/// `1[3-9]` and 9 more digits.
fn china_mobile(national: &str) -> bool {
    let bytes = national.as_bytes();
    bytes.len() == 11 && bytes[0] == b'1' && (b'3'..=b'9').contains(&bytes[1])
}

/// Whether a national significant number fits its country's plan.
fn fits_plan(country: CountryCode, national: &str) -> bool {
    let bytes = national.as_bytes();
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return false;
    }
    match country {
        // Mobiles 1[3-9] + 9 digits; Beijing's fixed lines 10 + 8 digits;
        // other fixed lines and service numbers a 2- or 3-digit area code
        // (not starting 0 or 1) and 7 or 8 digits.
        CountryCode::CHINA => match bytes[0] {
            b'1' => china_mobile(national) || (bytes.len() == 10 && bytes[1] == b'0'),
            b'0' => false,
            _ => (9..=11).contains(&bytes.len()),
        },
        // NXX-NXX-XXXX: area code and exchange do not start with 0 or 1.
        CountryCode::NANP => bytes.len() == 10 && bytes[0] >= b'2' && bytes[3] >= b'2',
        _ => {
            let plan = PLANS.iter().find(|p| p.country == country.0);
            let (lengths, leading_zero) = match plan {
                Some(plan) => (plan.lengths, plan.leading_zero),
                None => (GENERIC, false),
            };
            (leading_zero || bytes[0] != b'0')
                && lengths.contains(&bytes.len())
                && country.len() + bytes.len() <= MAX_DIGITS
        }
    }
}

/// The prefix dialled before a national number inside the country.
fn trunk_prefix(country: CountryCode) -> Option<&'static str> {
    match country {
        CountryCode::CHINA => Some("0"),
        CountryCode::NANP => Some("1"),
        _ => match PLANS.iter().find(|p| p.country == country.0) {
            Some(plan) => plan.trunk,
            None => Some("0"),
        },
    }
}

/// The two-digit country codes; every other code but 1 and 7 has three.
const TWO_DIGIT_CODES: &[&str] = &[
    "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45", "46", "47",
    "48", "49", "51", "52", "53", "54", "55", "56", "57", "58", "60", "61", "62", "63", "64", "65",
    "66", "81", "82", "84", "86", "90", "91", "92", "93", "94", "95", "98",
];

/// Codes no country has (ITU-T E.164 spare codes): two digits stand for
/// the whole block of three-digit codes under them.
const SPARE_CODES: &[&str] = &[
    "28", "83", "89", "210", "214", "215", "217", "219", "259", "292", "293", "294", "295", "296",
    "422", "424", "425", "426", "427", "428", "429", "693", "694", "695", "696", "697", "698",
    "699", "801", "802", "803", "804", "805", "806", "807", "854", "857", "858", "859", "884",
    "885", "887", "889", "969", "978", "990", "997", "999",
];

/// A region's numbering plan, as far as it is checked here.
struct Plan {
    country: u16,
    /// Dialled before national numbers inside the country, if anything.
    trunk: Option<&'static str>,
    /// The lengths a national significant number may have.
    lengths: &'static [usize],
    /// Whether a national number may start with 0 (Italy's fixed lines).
    leading_zero: bool,
}

/// A region not in [`PLANS`]: any length E.164 leaves room for.
const GENERIC: &[usize] = &[4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14];

const fn plan(country: u16, trunk: Option<&'static str>, lengths: &'static [usize]) -> Plan {
    Plan {
        country,
        trunk,
        lengths,
        leading_zero: false,
    }
}

/// The regions a clinic's customers most often come from, with the lengths
/// of their national significant numbers (from their national numbering
/// plans, as libphonenumber's metadata records them). China and North
/// America have their own rules in [`fits_plan`].
const PLANS: &[Plan] = &[
    plan(7, Some("8"), &[10]),
    plan(20, Some("0"), &[8, 9, 10]),
    plan(27, Some("0"), &[9]),
    plan(30, None, &[10]),
    plan(31, Some("0"), &[9]),
    plan(32, Some("0"), &[8, 9]),
    plan(33, Some("0"), &[9]),
    plan(34, None, &[9]),
    plan(36, Some("06"), &[8, 9]),
    Plan {
        country: 39,
        trunk: None,
        lengths: &[6, 7, 8, 9, 10, 11],
        leading_zero: true,
    },
    plan(40, Some("0"), &[9]),
    plan(41, Some("0"), &[9]),
    plan(43, Some("0"), &[4, 5, 6, 7, 8, 9, 10, 11, 12, 13]),
    plan(44, Some("0"), &[7, 9, 10]),
    plan(45, None, &[8]),
    plan(46, Some("0"), &[6, 7, 8, 9, 10]),
    plan(47, None, &[5, 8]),
    plan(48, None, &[9]),
    plan(49, Some("0"), &[5, 6, 7, 8, 9, 10, 11, 12, 13]),
    plan(52, None, &[10]),
    plan(55, Some("0"), &[10, 11]),
    plan(60, Some("0"), &[8, 9, 10]),
    plan(61, Some("0"), &[9]),
    plan(62, Some("0"), &[7, 8, 9, 10, 11, 12]),
    plan(63, Some("0"), &[8, 9, 10]),
    plan(64, Some("0"), &[8, 9, 10]),
    plan(65, None, &[8]),
    plan(66, Some("0"), &[8, 9]),
    plan(81, Some("0"), &[9, 10]),
    plan(82, Some("0"), &[8, 9, 10]),
    plan(84, Some("0"), &[9, 10]),
    plan(90, Some("0"), &[10]),
    plan(91, Some("0"), &[10]),
    plan(351, None, &[9]),
    plan(353, Some("0"), &[7, 8, 9]),
    plan(852, None, &[8]),
    plan(853, None, &[8]),
    plan(855, Some("0"), &[8, 9]),
    plan(886, Some("0"), &[8, 9]),
    plan(965, None, &[8]),
    plan(966, Some("0"), &[9]),
    plan(971, Some("0"), &[8, 9]),
    plan(972, Some("0"), &[8, 9]),
    plan(974, None, &[8]),
];

#[cfg(test)]
mod tests {
    use super::*;

    const CN: Option<CountryCode> = Some(CountryCode::CHINA);

    fn e164(typed: &str, default: Option<CountryCode>) -> String {
        parse(typed, default)
            .unwrap_or_else(|e| panic!("{typed}: {e}"))
            .e164()
    }

    fn code(text: &str) -> Option<CountryCode> {
        CountryCode::parse(text)
    }

    #[test]
    fn mainland_numbers_as_people_type_them_become_e164() {
        for typed in [
            "13812345678",
            "138 1234 5678",
            "138-1234-5678",
            "138.1234.5678",
            "(138) 1234 5678",
            "+8613812345678",
            "+86 138 1234 5678",
            "+86-138-1234-5678",
            "0086 138 1234 5678",
            "008613812345678",
            "013812345678",
            "１３８１２３４５６７８",
            "＋８６　１３８－１２３４－５６７８",
            "（138）1234－5678",
            " 138 1234 5678 ",
            "138\u{2014}1234\u{2014}5678",
        ] {
            assert_eq!(e164(typed, CN), "+8613812345678", "{typed}");
        }
    }

    #[test]
    fn a_country_code_typed_without_plus_is_not_doubled() {
        assert_eq!(e164("86 13900000032", CN), "+8613900000032");
        assert_eq!(e164("8613900000032", CN), "+8613900000032");
        assert_eq!(e164("86-139-0000-0032", CN), "+8613900000032");
        assert_eq!(e164("86 013900000032", CN), "+8613900000032");
        assert_eq!(e164("1-415-555-0016", code("1")), "+14155550016");
        assert_eq!(e164("1 (415) 555-0016", code("1")), "+14155550016");
        assert_eq!(e164("(415) 555-0016", code("1")), "+14155550016");
        assert_eq!(e164("447700900123", code("44")), "+447700900123");
        assert_eq!(e164("44 07700 900123", code("44")), "+447700900123");
        assert_eq!(e164("07700 900123", code("44")), "+447700900123");
        assert_eq!(e164("8 (916) 123-45-67", code("7")), "+79161234567");
    }

    #[test]
    fn an_international_prefix_picks_the_country_whatever_the_default() {
        assert_eq!(e164("+1 (415) 555-0123", CN), "+14155550123");
        assert_eq!(e164("+852 6123 4567", CN), "+85261234567");
        assert_eq!(e164("0085261234567", CN), "+85261234567");
        assert_eq!(e164("+44 (0)20 7946 0000", None), "+442079460000");
        assert_eq!(e164("+44 20 7946 0000", None), "+442079460000");
        assert_eq!(e164("011 44 20 7946 0000", code("1")), "+442079460000");
        assert_eq!(e164("+39 06 1234 5678", None), "+390612345678");
        assert_eq!(e164("+886 912 345 678", None), "+886912345678");
        assert_eq!(e164("+971 50 123 4567", None), "+971501234567");
        let phone = parse("+7 916 123-45-67", None).unwrap();
        assert_eq!(phone.country().to_string(), "7");
        assert_eq!(phone.national(), "9161234567");
    }

    #[test]
    fn national_numbers_keep_what_their_plan_keeps() {
        // Italy has no trunk prefix: the 0 of a fixed line is the number's.
        assert_eq!(e164("06 1234 5678", code("39")), "+390612345678");
        // Hong Kong and Singapore have none either.
        assert_eq!(e164("6123 4567", code("852")), "+85261234567");
        assert_eq!(e164("9123 4567", code("65")), "+6591234567");
        // Beijing and Guangzhou fixed lines.
        assert_eq!(e164("010-6552 9988", CN), "+861065529988");
        assert_eq!(e164("020 8888 6666", CN), "+862088886666");
        // A region without a plan here: the trunk 0 goes, at a guess.
        assert_eq!(e164("0812 345 678", code("263")), "+263812345678");
    }

    #[test]
    fn forms_for_providers() {
        let phone = parse("+86 138 1234 5678", None).unwrap();
        assert_eq!(phone.national(), "13812345678");
        assert_eq!(phone.digits(), "8613812345678");
        assert_eq!(phone.e164(), "+8613812345678");
        assert_eq!(phone.to_string(), "+8613812345678");
        assert!(phone.is_china_mobile());
        let phone = parse("+852 6123 4567", None).unwrap();
        assert_eq!(phone.digits(), "85261234567");
        assert!(!phone.is_china_mobile());
    }

    #[test]
    fn mainland_mobiles_are_checked_strictly() {
        for good in ["13812345678", "19912345678", "+86 166 1234 5678"] {
            let phone = parse(good, CN).unwrap();
            assert_eq!(phone.check(), Ok(()), "{good}");
            assert!(phone.is_china_mobile(), "{good}");
        }
        for bad in ["12812345678", "1381234567", "138123456789", "11012345678"] {
            let phone = parse(bad, CN).unwrap_or_else(|e| panic!("{bad}: {e}"));
            assert_eq!(phone.check(), Err(PhoneError::NotChinaMobile), "{bad}");
            assert!(!phone.is_china_mobile(), "{bad}");
        }
        assert!(parse("010 6552 9988", CN).unwrap().is_valid());
        assert!(!parse("010 6552 9988", CN).unwrap().is_china_mobile());
    }

    #[test]
    fn other_regions_are_checked_by_length() {
        for good in [
            "+1 415 555 0123",
            "+44 7700 900123",
            "+852 6123 4567",
            "+81 90 1234 5678",
            "+82 10 1234 5678",
            "+61 412 345 678",
            "+39 06 1234 5678",
            "+263 812 345 678",
        ] {
            assert_eq!(parse(good, None).unwrap().check(), Ok(()), "{good}");
        }
        for (bad, why) in [
            (
                "+1 415 555 012",
                PhoneError::WrongForRegion(CountryCode::NANP),
            ),
            (
                "+1 015 555 0123",
                PhoneError::WrongForRegion(CountryCode::NANP),
            ),
            (
                "+852 6123 456",
                PhoneError::WrongForRegion(code("852").unwrap()),
            ),
            (
                "+44 77009 001234",
                PhoneError::WrongForRegion(code("44").unwrap()),
            ),
            (
                "+65 0123 4567",
                PhoneError::WrongForRegion(code("65").unwrap()),
            ),
            (
                "+283 1234 5678",
                PhoneError::UnknownCountryCode("283".into()),
            ),
            (
                "+999 1234 5678",
                PhoneError::UnknownCountryCode("999".into()),
            ),
        ] {
            assert_eq!(parse(bad, None).unwrap().check(), Err(why), "{bad}");
        }
    }

    #[test]
    fn what_is_not_a_number_is_refused_when_read() {
        assert_eq!(parse("", CN), Err(PhoneError::Empty));
        assert_eq!(parse(" - ", CN), Err(PhoneError::Empty));
        assert_eq!(parse("+1415555abcd", None), Err(PhoneError::NotANumber));
        assert_eq!(
            parse("138 1234 5678 ext 12", CN),
            Err(PhoneError::NotANumber)
        );
        assert_eq!(parse("+86+13812345678", None), Err(PhoneError::NotANumber));
        assert_eq!(parse("138+12345678", CN), Err(PhoneError::NotANumber));
        assert_eq!(parse("13812345678", None), Err(PhoneError::NoCountryCode));
        assert_eq!(parse("+12", None), Err(PhoneError::TooShort));
        assert_eq!(parse("+1", None), Err(PhoneError::TooShort));
        assert_eq!(parse("123", CN), Err(PhoneError::TooShort));
        assert_eq!(
            parse("+86 1381234567890123", None),
            Err(PhoneError::TooLong)
        );
        assert_eq!(
            parse("+0123456789", None),
            Err(PhoneError::UnknownCountryCode("012".into()))
        );
    }

    #[test]
    fn country_codes_are_one_to_three_digits() {
        assert_eq!(code("86"), Some(CountryCode::CHINA));
        assert_eq!(code("+44").map(|c| c.to_string()), Some("44".into()));
        assert_eq!(code(" 1 "), Some(CountryCode::NANP));
        for bad in ["", "+", "UK", "0044", "1234", "4 4"] {
            assert_eq!(code(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_planned_length_reads_back_the_same_however_it_is_written() {
        let regions = PLANS
            .iter()
            .map(|p| (CountryCode(p.country), p.lengths))
            .chain([
                (CountryCode::CHINA, &[11][..]),
                (CountryCode::NANP, &[10][..]),
                (CountryCode(263), GENERIC),
            ]);
        let mut checked = 0;
        for (country, lengths) in regions {
            for &len in lengths {
                // 3 starts no trunk prefix, and is a valid first digit for
                // China's mobiles (138...) and North America's area codes.
                let national: String = "3810293847561029384756"[..len].to_string();
                let national = if country == CountryCode::CHINA {
                    format!("1{}", &national[..len - 1])
                } else {
                    national
                };
                if country.len() + len > MAX_DIGITS || !fits_plan(country, &national) {
                    continue;
                }
                let expected = format!("+{country}{national}");
                let mut written = vec![
                    expected.clone(),
                    format!("00{country} {national}"),
                    format!("+{country} ({national})"),
                    national.clone(),
                ];
                if let Some(trunk) = trunk_prefix(country) {
                    written.push(format!("{trunk} {national}"));
                }
                if !fits_plan(country, &format!("{country}{national}")) {
                    written.push(format!("{country}{national}"));
                    written.push(format!("{country} {national}"));
                }
                for typed in written {
                    let phone = parse(&typed, Some(country))
                        .unwrap_or_else(|e| panic!("{typed} in +{country}: {e}"));
                    assert_eq!(phone.e164(), expected, "{typed} in +{country}");
                    assert_eq!(phone.check(), Ok(()), "{typed} in +{country}");
                    checked += 1;
                    // E.164 reads back as itself, whatever the default.
                    for default in [None, CN, Some(CountryCode::NANP)] {
                        assert_eq!(parse(&phone.e164(), default).as_ref(), Ok(&phone));
                    }
                }
            }
        }
        assert!(checked > 400, "only {checked} numbers read");
    }

    #[test]
    fn country_codes_split_where_the_itu_assigns_them() {
        for (digits, country) in [
            ("14155550123", "1"),
            ("79161234567", "7"),
            ("8613812345678", "86"),
            ("85261234567", "852"),
            ("886912345678", "886"),
            ("35312345678", "353"),
            ("201001234567", "20"),
            ("2125612345678", "212"),
        ] {
            let (found, _) = split_country(digits).unwrap();
            assert_eq!(found.to_string(), country, "{digits}");
        }
    }
}
