//! Row counts read from a `mysqldump`/`mariadb-dump` stream as it passes.
//! The dump names the schema in ``USE `db`;``, every table in ``CREATE
//! TABLE `t` (`` (so empty tables count 0), and writes rows in
//! ``INSERT INTO `t` VALUES (…),(…);`` statements (MySQL's tool on one
//! line, MariaDB's with a row per line): a row is a parenthesis opened
//! outside a string literal, and the statement ends at a `;` outside one
//! (string literals escape quotes and newlines with a backslash; binary
//! columns are hex with `--hex-blob`). Counting the dump itself costs no second pass over the
//! tables and gives exactly what the dump holds, in its own snapshot.

use std::collections::BTreeMap;

use super::counting::Feed;

/// The longest line start kept to recognise a statement.
const HEAD: usize = 512;

#[derive(Debug, Default)]
pub struct InsertCounter {
    database: Option<String>,
    /// The start of the current line, until it is recognised.
    head: Vec<u8>,
    state: State,
    counts: BTreeMap<String, u64>,
}

#[derive(Debug, Default, PartialEq)]
enum State {
    /// Reading the start of a line.
    #[default]
    Head,
    /// The rest of a line that is not an INSERT.
    Skip,
    /// Inside an INSERT's values.
    Values {
        table: String,
        rows: u64,
        in_string: bool,
        escaped: bool,
    },
}

impl Feed for InsertCounter {
    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match &mut self.state {
                State::Head => {
                    let end = memchr::memchr(b'\n', bytes);
                    let line_end = end.unwrap_or(bytes.len());
                    // Byte by byte up to the head's size, so that the values
                    // of an INSERT are never swallowed into the head.
                    let room = HEAD.saturating_sub(self.head.len());
                    let take = line_end.min(room);
                    let before = self.head.len();
                    self.head.extend_from_slice(&bytes[..take]);
                    if let Some(at) = find(&self.head[before.saturating_sub(8)..], b" VALUES ") {
                        // Keep the head up to " VALUES "; the rest is values.
                        let cut = before.saturating_sub(8) + at + 8;
                        let consumed = cut - before;
                        self.head.truncate(cut);
                        self.end_head(false);
                        bytes = &bytes[consumed..];
                    } else if end.is_some() && take == line_end {
                        self.end_head(true);
                        bytes = &bytes[line_end + 1..];
                    } else if self.head.len() >= HEAD {
                        self.end_head(false);
                        bytes = &bytes[take..];
                    } else {
                        bytes = &bytes[take..];
                    }
                }
                State::Skip => match memchr::memchr(b'\n', bytes) {
                    Some(end) => {
                        self.state = State::Head;
                        bytes = &bytes[end + 1..];
                    }
                    None => bytes = &[],
                },
                State::Values {
                    table,
                    rows,
                    in_string,
                    escaped,
                } => {
                    let mut i = 0;
                    let mut line_done = false;
                    while i < bytes.len() && !line_done {
                        if *escaped {
                            *escaped = false;
                            i += 1;
                        } else if *in_string {
                            match memchr::memchr2(b'\\', b'\'', &bytes[i..]) {
                                None => i = bytes.len(),
                                Some(at) => {
                                    i += at;
                                    if bytes[i] == b'\\' {
                                        *escaped = true;
                                    } else {
                                        *in_string = false;
                                    }
                                    i += 1;
                                }
                            }
                        } else {
                            match memchr::memchr3(b'\'', b'(', b';', &bytes[i..]) {
                                None => i = bytes.len(),
                                Some(at) => {
                                    i += at;
                                    match bytes[i] {
                                        b'\'' => *in_string = true,
                                        // Values hold no parentheses outside
                                        // strings: each one opens a row.
                                        b'(' => *rows += 1,
                                        _ => line_done = true,
                                    }
                                    i += 1;
                                }
                            }
                        }
                    }
                    bytes = &bytes[i..];
                    if line_done {
                        let (table, rows) = (std::mem::take(table), *rows);
                        *self.counts.entry(table).or_default() += rows;
                        // The rest of the line after the `;`.
                        self.state = State::Skip;
                    }
                }
            }
        }
    }

    fn counts(&self) -> BTreeMap<String, u64> {
        self.counts.clone()
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl InsertCounter {
    /// The start of a line is complete (`newline`: the whole line) or long
    /// enough to decide what the line is.
    fn end_head(&mut self, newline: bool) {
        let head = std::mem::take(&mut self.head);
        let line = String::from_utf8_lossy(&head);
        self.state = if newline { State::Head } else { State::Skip };
        if let Some(rest) = line.strip_prefix("USE ") {
            if let Some((db, _)) = backtick_identifier(rest) {
                self.database = Some(db);
            }
        } else if let Some(rest) = line.strip_prefix("CREATE TABLE ") {
            if let (Some(db), Some((table, _))) = (&self.database, backtick_identifier(rest)) {
                self.counts.entry(format!("{db}.{table}")).or_default();
            }
        } else if let Some(rest) = line.strip_prefix("INSERT INTO ")
            && let (Some(db), Some((table, after))) = (&self.database, backtick_identifier(rest))
            // MySQL writes the rows on the same line, MariaDB one per line.
            && ((after == " VALUES " && !newline) || (after == " VALUES" && newline))
        {
            self.state = State::Values {
                table: format!("{db}.{table}"),
                rows: 0,
                in_string: false,
                escaped: false,
            };
        }
    }
}

/// ``"`a``b` …"`` → ``a`b`` and what follows.
fn backtick_identifier(s: &str) -> Option<(String, &str)> {
    let mut rest = s.strip_prefix('`')?;
    let mut out = String::new();
    loop {
        let end = rest.find('`')?;
        out.push_str(&rest[..end]);
        rest = &rest[end + 1..];
        match rest.strip_prefix('`') {
            Some(after) => {
                out.push('`');
                rest = after;
            }
            None => return Some((out, rest)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = r"-- MariaDB dump
CREATE DATABASE `shop`;
USE `shop`;
CREATE TABLE `orders` (
  `id` int(11) NOT NULL,
  PRIMARY KEY (`id`)
);
INSERT INTO `orders` VALUES (1,'a (b)','it\'s'),(2,NULL,'x\\'),(3,0xDEAD,'\n(');
INSERT INTO `orders` VALUES (4,'',''),(5,'\'\'','(');
CREATE TABLE `empty``one` (
  `id` int
);
/*!50001 CREATE TABLE `v` (
  `id` int
) */;
INSERT INTO `not a values line`;
USE `other`;
CREATE TABLE `t` (`a` int);
INSERT INTO `t` VALUES (1);
INSERT INTO `t` VALUES
(2),
(3);
INSERT INTO `t` VALUES
(4,';('),
(5,'x\\');
";

    fn expected() -> BTreeMap<String, u64> {
        [
            ("shop.orders".to_owned(), 5),
            ("shop.empty`one".to_owned(), 0),
            ("other.t".to_owned(), 5),
        ]
        .into()
    }

    #[test]
    fn rows_are_the_tuples_of_each_insert_outside_strings() {
        let mut c = InsertCounter::default();
        c.feed(DUMP.as_bytes());
        assert_eq!(c.counts(), expected());
    }

    #[test]
    fn chunk_boundaries_anywhere_give_the_same_counts() {
        for size in [1, 2, 3, 7, 13, 100] {
            let mut c = InsertCounter::default();
            for chunk in DUMP.as_bytes().chunks(size) {
                c.feed(chunk);
            }
            assert_eq!(c.counts(), expected(), "chunks of {size}");
        }
    }
}
