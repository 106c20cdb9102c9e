//! Masking of personal data for logs: phone numbers, names, email addresses.
//!
//! Tracing output and error messages go through these before they mention a
//! customer. The database keeps the real values; logs never do.

/// `13812345678` → `138****5678`; `+8613812345678` → `+86138****5678`.
/// Short or odd numbers keep at most their last two digits.
pub fn phone(number: &str) -> String {
    let chars: Vec<char> = number.chars().collect();
    let n = chars.len();
    if n >= 11 {
        let head: String = chars[..n - 8].iter().collect();
        let tail: String = chars[n - 4..].iter().collect();
        format!("{head}****{tail}")
    } else if n > 2 {
        let tail: String = chars[n - 2..].iter().collect();
        format!("{}{tail}", "*".repeat(n - 2))
    } else {
        "*".repeat(n)
    }
}

/// `张三` → `张*`; `欧阳娜娜` → `欧***`; `Alice Smith` → `A**********`.
/// Keeps the first character only, so a name can be told apart in a log but
/// not recovered.
pub fn name(full: &str) -> String {
    let mut chars = full.chars();
    match chars.next() {
        Some(first) => {
            let rest = chars.count();
            format!("{first}{}", "*".repeat(rest.max(1)))
        }
        None => String::new(),
    }
}

/// `lily.wang@example.com` → `l***@example.com`.
pub fn email(address: &str) -> String {
    match address.split_once('@') {
        Some((local, domain)) => {
            let first = local.chars().next().map(String::from).unwrap_or_default();
            format!("{first}***@{domain}")
        }
        None => name(address),
    }
}

/// Masks whatever address a channel uses: phone numbers, emails, or opaque
/// WeChat ids (which keep only their first four characters).
pub fn address(value: &str) -> String {
    if value.contains('@') {
        email(value)
    } else if value
        .chars()
        .all(|c| c.is_ascii_digit() || c == '+' || c == '-' || c == ' ')
    {
        phone(value)
    } else {
        let head: String = value.chars().take(4).collect();
        format!("{head}***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mobile_numbers_keep_prefix_and_last_four() {
        assert_eq!(phone("13812345678"), "138****5678");
        assert_eq!(phone("+8613812345678"), "+86138****5678");
        assert_eq!(phone("12345"), "***45");
    }

    #[test]
    fn names_keep_only_their_first_character() {
        assert_eq!(name("张三"), "张*");
        assert_eq!(name("欧阳娜娜"), "欧***");
        assert_eq!(name("A"), "A*");
        assert_eq!(name(""), "");
    }

    #[test]
    fn emails_keep_the_domain() {
        assert_eq!(email("lily.wang@example.com"), "l***@example.com");
    }

    #[test]
    fn addresses_are_masked_by_their_shape() {
        assert_eq!(address("13812345678"), "138****5678");
        assert_eq!(address("a@b.cn"), "a***@b.cn");
        assert_eq!(address("wmABCDEFG123"), "wmAB***");
    }
}
