//! Counting rows in a dump while the upload reads it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::pipeline::{Tap, Watch};

/// Something that reads a dump's bytes in order, in chunks of any size.
pub trait Feed: Send + 'static {
    fn feed(&mut self, bytes: &[u8]);
    /// Rows per table seen so far.
    fn counts(&self) -> BTreeMap<String, u64>;
}

/// A [`Feed`] shared between the reader that feeds it and whoever reads
/// its counts.
pub struct Shared<C>(Arc<Mutex<C>>);

impl<C: Feed> Watch for Shared<C> {
    fn watch(&mut self, bytes: &[u8]) {
        if let Ok(mut counter) = self.0.lock() {
            counter.feed(bytes);
        }
    }
}

/// A reader that shows every byte it passes on to a [`Feed`].
pub type Counting<R, C> = Tap<R, Shared<C>>;

/// `inner`, feeding a new `C`; and that `C`, to read the counts from.
pub fn counting<R, C: Feed + Default>(inner: R) -> (Counting<R, C>, Arc<Mutex<C>>) {
    let counter = Arc::new(Mutex::new(C::default()));
    (Tap::with(inner, Shared(counter.clone())), counter)
}

/// The counts of the tables in `databases` (a dump also holds system
/// databases, which a drill does not compare).
pub fn counts_in<C: Feed>(counter: &Mutex<C>, databases: &[String]) -> BTreeMap<String, u64> {
    let Ok(counter) = counter.lock() else {
        return BTreeMap::new();
    };
    counter
        .counts()
        .into_iter()
        .filter(|(table, _)| {
            databases.iter().any(|db| {
                table
                    .strip_prefix(db.as_str())
                    .is_some_and(|t| t.starts_with('.'))
            })
        })
        .collect()
}
