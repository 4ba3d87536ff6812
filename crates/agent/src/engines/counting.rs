//! Counting rows in a dump while the upload reads it.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// Something that reads a dump's bytes in order, in chunks of any size.
pub trait Feed: Send + 'static {
    fn feed(&mut self, bytes: &[u8]);
    /// Rows per table seen so far.
    fn counts(&self) -> BTreeMap<String, u64>;
}

/// A reader that shows every byte it passes on to a [`Feed`].
pub struct Counting<R, C> {
    inner: R,
    counter: Arc<Mutex<C>>,
}

impl<R, C: Feed + Default> Counting<R, C> {
    pub fn new(inner: R) -> (Counting<R, C>, Arc<Mutex<C>>) {
        let counter = Arc::new(Mutex::new(C::default()));
        (
            Counting {
                inner,
                counter: counter.clone(),
            },
            counter,
        )
    }
}

impl<R: AsyncRead + Unpin, C: Feed> AsyncRead for Counting<R, C> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &poll
            && let Ok(mut counter) = this.counter.lock()
        {
            counter.feed(&buf.filled()[before..]);
        }
        poll
    }
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
