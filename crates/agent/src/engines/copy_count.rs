//! Row counts read from a `pg_dumpall` stream as it passes: every `COPY
//! <table> (...) FROM stdin;` block holds one line per row (COPY's text
//! format escapes newlines inside values), ended by `\.`, and `\connect`
//! lines say which database follows. Counting the dump itself costs no
//! second pass over the tables, and the counts are exactly what the dump
//! holds — the same snapshot, even while clients write.

use std::collections::BTreeMap;

use super::counting::Feed;

/// The longest statement line kept for parsing; longer COPY headers (tables
/// with thousands of columns) are cut, which only loses their column list.
const MAX_LINE: usize = 64 << 10;

/// A line-by-line reader of the dump.
#[derive(Debug, Default)]
pub struct CopyCounter {
    database: Option<String>,
    /// `db.schema.table` of the COPY block being read.
    table: Option<String>,
    rows: u64,
    /// The start of the current line, when it began in an earlier chunk.
    line: Vec<u8>,
    counts: BTreeMap<String, u64>,
}

impl Feed for CopyCounter {
    fn feed(&mut self, mut bytes: &[u8]) {
        while let Some(end) = memchr::memchr(b'\n', bytes) {
            let (head, rest) = bytes.split_at(end);
            if self.line.is_empty() {
                self.end_line(head);
            } else {
                self.keep(head);
                let line = std::mem::take(&mut self.line);
                self.end_line(&line);
            }
            bytes = &rest[1..];
        }
        self.keep(bytes);
    }

    fn counts(&self) -> BTreeMap<String, u64> {
        self.counts.clone()
    }
}

impl CopyCounter {
    fn keep(&mut self, bytes: &[u8]) {
        // Inside a COPY block only `\.` matters: three bytes are enough.
        let cap = if self.table.is_some() { 3 } else { MAX_LINE };
        let room = cap.saturating_sub(self.line.len());
        self.line.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn end_line(&mut self, line: &[u8]) {
        if let Some(table) = &self.table {
            if line == b"\\." {
                *self.counts.entry(table.clone()).or_default() += self.rows;
                self.table = None;
                self.rows = 0;
            } else {
                self.rows += 1;
            }
            return;
        }
        let Ok(line) = std::str::from_utf8(line) else {
            return;
        };
        if let Some(target) = line.strip_prefix("\\connect ") {
            self.database = connect_target(target);
        } else if let Some(statement) = line.strip_prefix("COPY ")
            && line.ends_with(" FROM stdin;")
            && let (Some(db), Some((schema, table))) = (&self.database, qualified_name(statement))
        {
            self.table = Some(format!("{db}.{schema}.{table}"));
            self.rows = 0;
        }
    }
}

/// The database of a `\connect` line: `app`, `"My DB"`, or
/// `-reuse-previous=on "dbname='it''s'"`, as pg_dumpall writes them.
fn connect_target(target: &str) -> Option<String> {
    let target = target.trim();
    if let Some(rest) = target.strip_prefix("-reuse-previous=on ") {
        let conninfo = unquote_double(rest.trim())?;
        let value = conninfo.strip_prefix("dbname=")?;
        return unquote_conninfo(value);
    }
    if target.starts_with('"') {
        return unquote_double(target);
    }
    Some(target.split_whitespace().next()?.to_owned())
}

/// `"a""b"` → `a"b`.
fn unquote_double(s: &str) -> Option<String> {
    let inner = s.strip_prefix('"')?.strip_suffix('"')?;
    Some(inner.replace("\"\"", "\""))
}

/// A conninfo value: `'it\'s'` (quoted, backslash escapes) or bare.
fn unquote_conninfo(s: &str) -> Option<String> {
    let Some(inner) = s.strip_prefix('\'') else {
        return Some(s.to_owned());
    };
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '\'' => return Some(out),
            c => out.push(c),
        }
    }
    None
}

/// `public.orders (id, ...) FROM stdin;` or `"Sales"."Q1 ""x""" (...)` →
/// the schema and table, unquoted.
fn qualified_name(statement: &str) -> Option<(String, String)> {
    let (schema, rest) = identifier(statement)?;
    let rest = rest.strip_prefix('.')?;
    let (table, rest) = identifier(rest)?;
    (rest.starts_with(' ')).then_some((schema, table))
}

/// One identifier, quoted or bare, and what follows it.
fn identifier(s: &str) -> Option<(String, &str)> {
    if let Some(quoted) = s.strip_prefix('"') {
        let mut out = String::new();
        let mut rest = quoted;
        loop {
            let end = rest.find('"')?;
            out.push_str(&rest[..end]);
            rest = &rest[end + 1..];
            match rest.strip_prefix('"') {
                Some(after) => {
                    out.push('"');
                    rest = after;
                }
                None => return Some((out, rest)),
            }
        }
    }
    let end = s.find(['.', ' '])?;
    (end > 0).then(|| (s[..end].to_owned(), &s[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "--\n-- PostgreSQL database cluster dump\n--\n\
        CREATE ROLE app_reader;\n\
        \\connect template1\n\
        \\connect app\n\
        COPY public.customers (id, name, note) FROM stdin;\n\
        1\tAnna\t\\N\n\
        2\tBen\tline\\nbreak \\. not an end\n\
        3\tCé\t\\\\.\n\
        \\.\n\
        COPY \"Sales\".\"Q1 \"\"x\"\"\" (id) FROM stdin;\n\
        \\.\n\
        COPY public.customers (id, name, note) FROM stdin;\n\
        4\tDan\t\\N\n\
        \\.\n\
        \\connect -reuse-previous=on \"dbname='it\\'s'\"\n\
        COPY s.t (a) FROM stdin;\n\
        x\n\
        \\.\n\
        SELECT 'COPY fake.table (a) FROM stdin;';\n";

    fn expected() -> BTreeMap<String, u64> {
        [
            ("app.public.customers".to_owned(), 4),
            ("app.Sales.Q1 \"x\"".to_owned(), 0),
            ("it's.s.t".to_owned(), 1),
        ]
        .into()
    }

    #[test]
    fn rows_are_counted_per_table_and_database() {
        let mut c = CopyCounter::default();
        c.feed(DUMP.as_bytes());
        assert_eq!(c.counts(), expected());
    }

    #[test]
    fn chunk_boundaries_anywhere_give_the_same_counts() {
        let bytes = DUMP.as_bytes();
        for size in [1, 2, 3, 5, 7, 64] {
            let mut c = CopyCounter::default();
            for chunk in bytes.chunks(size) {
                c.feed(chunk);
            }
            assert_eq!(c.counts(), expected(), "chunks of {size}");
        }
    }

    #[test]
    fn connect_lines_in_every_form() {
        assert_eq!(connect_target("app").as_deref(), Some("app"));
        assert_eq!(connect_target("\"My DB\"").as_deref(), Some("My DB"));
        assert_eq!(
            connect_target("-reuse-previous=on \"dbname='a b'\"").as_deref(),
            Some("a b")
        );
    }
}
