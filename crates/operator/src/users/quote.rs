//! Identifier and literal quoting per engine. Pure functions.
//!
//! This is the second line of defense: names are first checked against the
//! API's patterns ([`super::validate_common`]), and then quoted here so that
//! even a name that got past the patterns is a single inert token. The
//! identifier functions also refuse outright what quoting cannot make safe
//! or unambiguous: NUL bytes (C strings end there), other control
//! characters, non-ASCII characters (look-alikes such as a Cyrillic `а` or
//! a fullwidth quote) and names longer than the engine keeps (PostgreSQL
//! silently truncates at 63 bytes, which could alias another name).

use super::{UserError, shown};

/// PostgreSQL keeps at most NAMEDATALEN-1 = 63 bytes of an identifier.
pub const PG_MAX_IDENT: usize = 63;
/// MySQL/MariaDB schema and table names: at most 64 characters.
pub const MYSQL_MAX_IDENT: usize = 64;
/// MySQL 8 user names: at most 32 characters (MariaDB allows 80).
pub const MYSQL_MAX_USER: usize = 32;

/// Refuses what no quoting makes safe: empty, too long, NUL, control
/// characters, non-ASCII.
pub fn check_identifier(kind: &str, name: &str, max_len: usize) -> Result<(), UserError> {
    if name.is_empty() {
        return Err(UserError::Invalid(format!("{kind} must not be empty")));
    }
    if name.len() > max_len {
        return Err(UserError::Invalid(format!(
            "{kind} {} is longer than {max_len} bytes",
            shown(name)
        )));
    }
    if name.contains('\0') {
        return Err(UserError::Invalid(format!(
            "{kind} {} contains a NUL byte",
            shown(name)
        )));
    }
    if let Some(c) = name.chars().find(|c| !c.is_ascii()) {
        return Err(UserError::Invalid(format!(
            "{kind} {} contains the non-ASCII character U+{:04X}; only ASCII names are accepted (look-alike characters are refused)",
            shown(name),
            c as u32
        )));
    }
    if name.chars().any(|c| c.is_ascii_control()) {
        return Err(UserError::Invalid(format!(
            "{kind} {} contains a control character",
            shown(name)
        )));
    }
    Ok(())
}

/// `"name"`, doubling `"`: a PostgreSQL quoted identifier.
pub fn pg_ident(name: &str) -> Result<String, UserError> {
    check_identifier("identifier", name, PG_MAX_IDENT)?;
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

/// A PostgreSQL string literal that means `value` whatever
/// `standard_conforming_strings` is: `'...'` doubling `'` when there is no
/// backslash, else `E'...'` doubling `'` and `\` (as libpq's
/// PQescapeLiteral does).
pub fn pg_literal(value: &str) -> Result<String, UserError> {
    if value.contains('\0') {
        return Err(UserError::Invalid(
            "a string value contains a NUL byte".into(),
        ));
    }
    let body = value.replace('\'', "''");
    if value.contains('\\') {
        Ok(format!("E'{}'", body.replace('\\', "\\\\")))
    } else {
        Ok(format!("'{body}'"))
    }
}

/// `` `name` ``, doubling backticks: a MySQL quoted identifier (schema,
/// table).
pub fn mysql_ident(name: &str) -> Result<String, UserError> {
    check_identifier("identifier", name, MYSQL_MAX_IDENT)?;
    Ok(format!("`{}`", name.replace('`', "``")))
}

/// A schema name for `GRANT ... ON <here>.*`. At that level MySQL and
/// MariaDB read `_` and `%` as wildcards (`app_1` would also match
/// `appx1`), so they are escaped with a backslash (`app\_1`), which the
/// server reads literally inside a quoted identifier.
pub fn mysql_schema_grant(name: &str) -> Result<String, UserError> {
    check_identifier("database", name, MYSQL_MAX_IDENT)?;
    let mut escaped = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        match c {
            '\\' | '_' | '%' => {
                escaped.push('\\');
                escaped.push(c);
            }
            '`' => escaped.push_str("``"),
            c => escaped.push(c),
        }
    }
    Ok(format!("`{escaped}`"))
}

/// A MySQL string literal meaning `value`: `'` is doubled, and `\` is
/// doubled too unless the session runs with `NO_BACKSLASH_ESCAPES` (where a
/// backslash is an ordinary character). Getting the mode wrong the other
/// way round would only change the value, never end the literal early: the
/// unsafe mistake (not doubling `\` when the server reads escapes) is made
/// only when the caller saw `NO_BACKSLASH_ESCAPES` in the session's mode.
pub fn mysql_literal(value: &str, no_backslash_escapes: bool) -> Result<String, UserError> {
    if value.contains('\0') {
        return Err(UserError::Invalid(
            "a string value contains a NUL byte".into(),
        ));
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' if !no_backslash_escapes => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
    Ok(out)
}

/// `'user'@'%'`, the account a DatabaseUser owns. Backslashes are refused in
/// the user part so the literal means the same in every `sql_mode`.
pub fn mysql_account(user: &str) -> Result<String, UserError> {
    mysql_account_at(user, "%")
}

/// `'user'@'host'`: [`mysql_account`] at another host, such as the
/// `localhost` account the images make for root.
pub fn mysql_account_at(user: &str, host: &str) -> Result<String, UserError> {
    check_identifier("username", user, MYSQL_MAX_USER)?;
    if user.contains('\\') {
        return Err(UserError::Invalid(format!(
            "username {} contains a backslash",
            shown(user)
        )));
    }
    Ok(format!(
        "'{}'@{}",
        user.replace('\'', "''"),
        mysql_literal(host, false)?
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    //! The quoted forms are parsed back with small lexers that follow each
    //! engine's rules: every hostile input must come back as exactly one
    //! token holding exactly the input, so nothing of it can act as SQL.

    use super::*;
    use proptest::prelude::*;

    /// Reads one PostgreSQL token at the start of `s`: a quoted identifier,
    /// a `'...'` or `E'...'` literal. Returns its value and the rest.
    pub(crate) fn pg_lex(s: &str) -> Option<(String, &str)> {
        // Only \\ and \' reach an E'' literal from pg_literal; other escapes
        // would change meaning, which the test then reports.
        let escape: Escape = |next| matches!(next, '\\' | '\'').then_some(next);
        if let Some(rest) = s.strip_prefix("E'") {
            lex_quoted(rest, '\'', Some(escape))
        } else if let Some(rest) = s.strip_prefix('\'') {
            lex_quoted(rest, '\'', None)
        } else {
            lex_quoted(s.strip_prefix('"')?, '"', None)
        }
    }

    /// Reads one MySQL token: a backtick identifier or a `'...'` literal.
    pub(crate) fn mysql_lex(s: &str, backslash_escapes: bool) -> Option<(String, &str)> {
        if let Some(rest) = s.strip_prefix('\'') {
            lex_quoted(rest, '\'', backslash_escapes.then_some(Some as Escape))
        } else {
            lex_quoted(s.strip_prefix('`')?, '`', None)
        }
    }

    /// What the character after a backslash stands for (None: the lexer
    /// refuses the token).
    type Escape = fn(char) -> Option<char>;

    /// Reads the rest of a token opened by `quote`: a doubled quote stands
    /// for one, and with `escape` a backslash escapes the next character.
    /// Returns the token's value and what follows its closing quote.
    fn lex_quoted(body: &str, quote: char, escape: Option<Escape>) -> Option<(String, &str)> {
        let mut value = String::new();
        let mut chars = body.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if let Some(escape) = escape.filter(|_| c == '\\') {
                let (_, next) = chars.next()?;
                value.push(escape(next)?);
            } else if c == quote {
                if let Some(&(_, q)) = chars.peek()
                    && q == quote
                {
                    chars.next();
                    value.push(quote);
                } else {
                    return Some((value, &body[i + 1..]));
                }
            } else {
                value.push(c);
            }
        }
        None
    }

    const HOSTILE: &[&str] = &[
        "x\"; DROP TABLE canary; --",
        "x'; DROP TABLE canary; --",
        "x`; DROP TABLE canary; --",
        "x\\'; DROP TABLE canary; --",
        "x\\\"; DROP TABLE canary; --",
        "x\\`; DROP TABLE canary; --",
        "x/* comment */ y",
        "x -- comment",
        "x\\",
        "\\",
        "'",
        "\"",
        "`",
        "''''",
        "\"\"\"\"",
        "a;b",
        "$$ DROP TABLE canary $$",
        "$tag$ x $tag$",
        "%_",
    ];

    #[test]
    fn hostile_identifiers_stay_one_pg_token() {
        for h in HOSTILE {
            let q = pg_ident(h).unwrap();
            assert_eq!(pg_lex(&q), Some((h.to_string(), "")), "{h:?} -> {q}");
        }
    }

    #[test]
    fn hostile_literals_stay_one_pg_token() {
        for h in HOSTILE {
            let q = pg_literal(h).unwrap();
            assert_eq!(pg_lex(&q), Some((h.to_string(), "")), "{h:?} -> {q}");
        }
        assert_eq!(pg_literal("it's").unwrap(), "'it''s'");
        assert_eq!(pg_literal(r"a\'b").unwrap(), r"E'a\\''b'");
    }

    #[test]
    fn hostile_stays_one_mysql_token() {
        for h in HOSTILE {
            let q = mysql_ident(h).unwrap();
            assert_eq!(mysql_lex(&q, true), Some((h.to_string(), "")), "{q}");
            for nbe in [false, true] {
                let q = mysql_literal(h, nbe).unwrap();
                assert_eq!(mysql_lex(&q, !nbe), Some((h.to_string(), "")), "{q}");
            }
        }
        assert_eq!(mysql_literal(r"a\'b", false).unwrap(), r"'a\\''b'");
        assert_eq!(mysql_literal(r"a\'b", true).unwrap(), r"'a\''b'");
    }

    #[test]
    fn mysql_accounts() {
        assert_eq!(mysql_account("app").unwrap(), "'app'@'%'");
        assert_eq!(mysql_account("a'b").unwrap(), "'a''b'@'%'");
        for hostile in ["x'@'%'; DROP USER root; --", "x'; DROP USER r; --"] {
            let q = mysql_account(hostile).unwrap();
            for backslash_escapes in [false, true] {
                let (user, rest) = mysql_lex(&q, backslash_escapes).unwrap();
                assert_eq!(user, hostile);
                assert_eq!(rest, "@'%'");
            }
        }
        assert!(mysql_account(&"a".repeat(33)).is_err());
        assert!(mysql_account("a\\b").is_err());
    }

    #[test]
    fn mysql_schema_grants_escape_wildcards() {
        assert_eq!(mysql_schema_grant("app").unwrap(), "`app`");
        assert_eq!(mysql_schema_grant("app_1").unwrap(), r"`app\_1`");
        assert_eq!(mysql_schema_grant("a%b").unwrap(), r"`a\%b`");
        assert_eq!(mysql_schema_grant("a`b").unwrap(), "`a``b`");
        assert_eq!(mysql_schema_grant(r"a\b").unwrap(), r"`a\\b`");
    }

    #[test]
    fn refused_outright() {
        let long = "a".repeat(64);
        for bad in [
            "",
            "a\0b",
            "\0",
            "a\nb",
            "a\u{7f}",
            "аdmin",        // Cyrillic а
            "ａdmin",       // fullwidth a
            "a\u{200b}",    // zero-width space
            "a\u{2019}b",   // right single quotation mark
            "a\u{ff02}b",   // fullwidth quotation mark
            "a\u{02bc}; x", // modifier letter apostrophe
            long.as_str(),
        ] {
            assert!(pg_ident(bad).is_err(), "{bad:?}");
            assert!(mysql_account(bad).is_err(), "{bad:?}");
        }
        assert!(mysql_ident(&"a".repeat(65)).is_err());
        assert!(pg_literal("a\0").is_err());
        assert!(mysql_literal("a\0", false).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn any_printable_ascii_identifier_is_one_token(name in "[ -~]{1,63}") {
            let q = pg_ident(&name).unwrap();
            prop_assert_eq!(pg_lex(&q), Some((name.clone(), "")));
            let q = mysql_ident(&name).unwrap();
            prop_assert_eq!(mysql_lex(&q, true), Some((name.clone(), "")));
        }

        #[test]
        fn any_string_literal_is_one_token(value in "[^\u{0}]{0,300}") {
            let q = pg_literal(&value).unwrap();
            prop_assert_eq!(pg_lex(&q), Some((value.clone(), "")));
            for nbe in [false, true] {
                let q = mysql_literal(&value, nbe).unwrap();
                prop_assert_eq!(mysql_lex(&q, !nbe), Some((value.clone(), "")));
            }
        }

        #[test]
        fn hostile_mix_is_one_token(parts in proptest::collection::vec(
            prop_oneof![
                Just("'"), Just("\""), Just("`"), Just("\\"), Just(";"), Just("--"),
                Just("/*"), Just("*/"), Just("$$"), Just(" DROP TABLE canary"), Just("x"),
                Just("%"), Just("_"), Just("@")
            ], 1..40)) {
            let s: String = parts.concat();
            if s.len() <= 63 {
                let q = pg_ident(&s).unwrap();
                prop_assert_eq!(pg_lex(&q), Some((s.clone(), "")));
                let q = mysql_ident(&s).unwrap();
                prop_assert_eq!(mysql_lex(&q, true), Some((s.clone(), "")));
            }
            let q = pg_literal(&s).unwrap();
            prop_assert_eq!(pg_lex(&q), Some((s.clone(), "")));
            for nbe in [false, true] {
                let q = mysql_literal(&s, nbe).unwrap();
                prop_assert_eq!(mysql_lex(&q, !nbe), Some((s.clone(), "")));
            }
        }

        #[test]
        fn non_ascii_identifiers_are_refused(prefix in "[a-z]{0,5}", c in "[^\u{0}-\u{7f}]", suffix in "[a-z]{0,5}") {
            let name = format!("{prefix}{c}{suffix}");
            prop_assert!(pg_ident(&name).is_err());
            prop_assert!(mysql_ident(&name).is_err());
            prop_assert!(mysql_account(&name).is_err());
        }
    }
}
