//! Small cross-crate conventions for failures: how an error chain is rendered, how a poisoned lock
//! is treated, and how an error carries its next step for people.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Renders an error and all its sources on one line, `outer: inner: innermost`.
///
/// Some libraries repeat their source in their own `Display`; an exact repeat is skipped so the line
/// says each thing once.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        let s = e.to_string();
        if !out.ends_with(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        next = e.source();
    }
    out
}

/// Locks `m`, taking over a lock that a panicking thread poisoned.
///
/// Every mutex in Nexus guards plain data (maps, queues, caches) whose invariants hold between
/// statements, so the data a panicking holder left is still usable; refusing it would turn one
/// task's panic into a crash of every other task (every tenant's workspaces) that touches the lock.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An error that knows the next step a person should take. Error enums implement it so hints
/// travel as data to the one place that renders them (the CLI's `Ui`, the API's error body).
pub trait Hint {
    /// What to do next, in one sentence; `None` when there is nothing better than the message.
    fn hint(&self) -> Option<String>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("inner")]
    struct Inner;

    #[derive(Debug, thiserror::Error)]
    #[error("wrapped: inner")]
    struct Repeats(#[source] Inner);

    #[test]
    fn chain_joins_sources_once() {
        assert_eq!(error_chain(&Outer(Inner)), "outer: inner");
        assert_eq!(error_chain(&Repeats(Inner)), "wrapped: inner");
    }

    #[test]
    fn a_poisoned_lock_is_taken_over() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let _g = m2.lock().unwrap();
            panic!("poison it");
        })
        .join();
        assert!(m.is_poisoned());
        *lock(&m) += 1;
        assert_eq!(*lock(&m), 2);
    }
}
