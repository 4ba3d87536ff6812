//! What objects cost on the heap once deserialised: the bench's allocator
//! counts, per thread, the bytes allocated and freed, so that deserialising
//! a list of objects on one thread says exactly what keeping them costs.
//! It is how the figures of the operator's caches by kind were found
//! (`docs/src/benchmark.md`), measured rather than guessed from JSON sizes
//! (a StatefulSet of 6 KB of JSON takes 39 KB as `k8s-openapi` types).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use serde::de::DeserializeOwned;

/// The system allocator, counting each thread's live bytes.
pub struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn add(bytes: isize) {
    // `try_with`: a thread being torn down has no counter any more.
    let _ = LIVE.try_with(|live| live.set(live.get() + bytes));
}

// SAFETY: every call is passed to the system allocator unchanged; the
// counter is a thread-local integer that allocates nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(layout.size() as isize);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add(-(layout.size() as isize));
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        add(new_size as isize - layout.size() as isize);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// The heap bytes the objects in `jsons` take once deserialised as `T`,
/// each behind an `Arc` as a reflector store keeps them.
pub fn held<T: DeserializeOwned>(jsons: &[String]) -> anyhow::Result<usize> {
    let before = LIVE.with(Cell::get);
    let objects = jsons
        .iter()
        .map(|json| serde_json::from_str::<T>(json).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()?;
    let after = LIVE.with(Cell::get);
    let vector = objects.capacity() * size_of::<Arc<T>>();
    drop(objects);
    Ok(usize::try_from(after - before)
        .unwrap_or(0)
        .saturating_sub(vector))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_string_costs_its_bytes_and_a_bigger_one_more() {
        let small = held::<String>(&["\"ab\"".into()]).unwrap();
        let large = held::<String>(&[format!("\"{}\"", "x".repeat(1000))]).unwrap();
        // An Arc's counts and the String, then its 1,000 bytes.
        assert!((2..100).contains(&small), "{small}");
        assert!((1000..1100).contains(&large), "{large}");
    }
}
