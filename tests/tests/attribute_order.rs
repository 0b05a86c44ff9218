//! Attribute order with `#[tracing::instrument(err)]`, against the real server:
//! with `#[pglock::advisory]` first (as its docs say), the instrument span covers
//! the acquisition and records a busy-lock error; the other way round the span
//! covers only the body and the busy error is returned outside it.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use deadpool_postgres::Pool;
use pglock_tests::{pool, Fixture};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// An event: the name of the span it happened in, and its fields.
type EventRecord = (Option<String>, HashMap<String, String>);

/// Records, for every event, the span it happened in and its fields.
#[derive(Clone, Default)]
struct Recorder {
    next: Arc<AtomicU64>,
    names: Arc<Mutex<HashMap<u64, String>>>,
    entered: Arc<Mutex<Vec<u64>>>,
    events: Arc<Mutex<Vec<EventRecord>>>,
}

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.names
            .lock()
            .unwrap()
            .insert(id, span.metadata().name().to_string());
        Id::from_u64(id)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = HashMap::new();
        event.record(&mut Fields(&mut fields));
        let current = self.entered.lock().unwrap().last().copied();
        let span = current.and_then(|id| self.names.lock().unwrap().get(&id).cloned());
        self.events.lock().unwrap().push((span, fields));
    }
    fn enter(&self, span: &Id) {
        self.entered.lock().unwrap().push(span.into_u64());
    }
    fn exit(&self, span: &Id) {
        let mut entered = self.entered.lock().unwrap();
        if let Some(at) = entered.iter().rposition(|id| *id == span.into_u64()) {
            entered.remove(at);
        }
    }
}

impl Recorder {
    /// The `error` fields of the events recorded inside the span `name`.
    fn errors_in(&self, name: &str) -> Vec<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|(span, _)| span.as_deref() == Some(name))
            .filter_map(|(_, fields)| fields.get("error").cloned())
            .collect()
    }
}

#[pglock::advisory(name, pool = pool, timeout = "0s")]
#[tracing::instrument(err, skip_all)]
async fn advisory_first(pool: &Pool, name: &str) -> Result<(), pglock::Error> {
    Ok(())
}

#[tracing::instrument(err, skip_all)]
#[pglock::advisory(name, pool = pool, timeout = "0s")]
async fn instrument_first(pool: &Pool, name: &str) -> Result<(), pglock::Error> {
    Ok(())
}

#[tokio::test(flavor = "current_thread")]
async fn advisory_first_puts_the_busy_error_in_the_functions_span() {
    let recorder = Recorder::default();
    let _default = tracing::subscriber::set_default(recorder.clone());
    let pool = pool(2).await;
    let fixture = Fixture::new("attr-order").await;
    let _holder = fixture.hold_elsewhere().await;

    let err = advisory_first(&pool, &fixture.name).await.unwrap_err();
    assert!(err.is_not_acquired(), "{err}");
    let recorded = recorder.errors_in("advisory_first");
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert!(
        recorded[0].contains("held by another session"),
        "{recorded:?}"
    );

    let err = instrument_first(&pool, &fixture.name).await.unwrap_err();
    assert!(err.is_not_acquired(), "{err}");
    assert!(
        recorder.errors_in("instrument_first").is_empty(),
        "below the attribute, the span covers only the body: the busy error is outside it"
    );
}
