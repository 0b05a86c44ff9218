//! Acquire and release are observable through `tracing`: a `pglock.acquire` span
//! that records the lock, its mode and the wait time (`wait_us`, and whether it was
//! `acquired`), and a `pglock.release` span. A minimal subscriber records what the
//! library emits.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// A span's name and the fields recorded on it.
type SpanRecord = (String, HashMap<String, String>);

/// Every span's record, by span id.
#[derive(Clone, Default)]
struct Recorder {
    next: Arc<AtomicU64>,
    spans: Arc<Mutex<HashMap<u64, SpanRecord>>>,
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
        let mut fields = HashMap::new();
        span.record(&mut Fields(&mut fields));
        self.spans
            .lock()
            .unwrap()
            .insert(id, (span.metadata().name().to_string(), fields));
        Id::from_u64(id)
    }
    fn record(&self, span: &Id, values: &Record<'_>) {
        if let Some((_, fields)) = self.spans.lock().unwrap().get_mut(&span.into_u64()) {
            values.record(&mut Fields(fields));
        }
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

impl Recorder {
    fn named(&self, name: &str) -> Vec<HashMap<String, String>> {
        let spans = self.spans.lock().unwrap();
        let mut found: Vec<_> = spans.iter().filter(|(_, (n, _))| n == name).collect();
        found.sort_by_key(|(id, _)| **id);
        found
            .into_iter()
            .map(|(_, (_, fields))| fields.clone())
            .collect()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn acquire_and_release_spans_carry_the_wait() {
    let recorder = Recorder::default();
    let _default = tracing::subscriber::set_default(recorder.clone());
    let pool = pglock_tests::pool(2).await;
    let name = pglock_tests::unique_name("tracing");
    let guard = pglock::advisory(name.as_str())
        .acquire(&pool)
        .await
        .unwrap();
    let busy = pglock::advisory(name.as_str())
        .shared()
        .timeout(Duration::from_millis(20))
        .acquire(&pool)
        .await;
    assert!(busy.unwrap_err().is_not_acquired());
    guard.release().await.unwrap();

    let acquires = recorder.named("pglock.acquire");
    assert_eq!(acquires.len(), 2, "{acquires:?}");
    assert!(acquires[0]["lock"].contains(&name));
    assert_eq!(acquires[0]["mode"], "exclusive");
    assert_eq!(acquires[0]["acquired"], "true");
    assert!(acquires[0]["wait_us"].parse::<u64>().is_ok());
    assert_eq!(acquires[1]["mode"], "shared");
    assert_eq!(acquires[1]["acquired"], "false");
    let waited: u64 = acquires[1]["wait_us"].parse().unwrap();
    assert!(
        waited >= 20_000,
        "the timed-out wait lasted at least its timeout: {waited} µs"
    );
    let releases = recorder.named("pglock.release");
    assert_eq!(releases.len(), 1);
    assert!(releases[0]["lock"].contains(&name), "{releases:?}");
}
