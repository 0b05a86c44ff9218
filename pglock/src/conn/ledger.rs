//! The hold ledger: which holds pglock has obtained through one source — the one
//! connection of a [`Session`](crate::Session), or the connections of one pool —
//! and which guard owns each.
//!
//! PostgreSQL counts advisory-lock holds per *server session*, not per guard: two
//! guards that share a connection and take the same key get one stacked hold
//! each, both "granted", and an unlock releases whichever hold the server finds.
//! Only the client can tell whose hold is whose. The ledger keeps two rules per
//! key, and every acquisition passes through [`Ledger::admit`] before it sends
//! anything:
//!
//! 1. **Holds.** A key is held through one source either by one exclusive guard or
//!    by any number of shared guards (a read/write permit per guard, kept until
//!    the guard's unlock has been queued on its connection). A second exclusive
//!    acquisition waits *here*, in the process — in the order it asked, within its
//!    timeout — instead of stacking on the same session (two holders) or taking a
//!    second pooled connection to wait on itself at the server. When the waiting
//!    task is itself an owner of a conflicting hold it would wait forever, so it
//!    is refused at once ([`Refusal::SelfWait`]).
//! 2. **Attempts.** At most one attempt per key is on the server at a time (an
//!    attempt permit, held from before its lock statement is sent until its
//!    outcome is settled: granted and recorded, or its cleanup queued). So the
//!    next statement about that key on the connection after a failed, timed-out or
//!    abandoned wait is that attempt's own cleanup. The cleanup
//!    (`unlock-if-held`) then sees only what the attempt produced: a session that
//!    already held the key in that mode is granted it again at once and never
//!    waits, so a held key after a *failed* wait can only be that wait's late
//!    grant, and after a granted one it is one more hold of the same session —
//!    releasing one hold leaves every other guard's hold in place.
//!
//! Unlocks are not serialized: holds are counted, so an unlock releases exactly
//! one, whichever guard sends it.
//!
//! 3. **Relays.** On a multiplexing source an exclusive guard that waits here may
//!    leave a [`Request`]: a releasing exclusive guard of the same key then keeps
//!    its permit, takes the attempt permit, and sends its unlock and the waiter's
//!    try as one statement (`guard::relay`). Both permits pass to the waiter with
//!    the answer, so rules 1 and 2 hold throughout. Requests are served in the
//!    order they were made, and only while no other kind of waiter (shared, or
//!    exclusive without a request) waits for the key, which keeps the local queue
//!    first come, first served.
//! 4. **Parked unlocks.** On a multiplexing source a dropped exclusive guard
//!    that nobody waits for may leave its unlock, with its hold, in the entry
//!    (`guard::park`) for a task to send. The next acquisition of the key takes
//!    it out first: an exclusive one that could have left a relay request
//!    carries it (its try goes out in the same statement, after the unlock),
//!    any other sends it at once and then goes on.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use futures_util::future::Either;
use tokio::sync::{
    oneshot, Mutex as AsyncMutex, OwnedMutexGuard, OwnedRwLockReadGuard, OwnedRwLockWriteGuard,
    RwLock,
};

use crate::guard::park::{Carried, Parked};
use crate::guard::relay::{Ask, Relayed};

use crate::key::{LockKey, Mode};

/// The holds and attempts of one source, by key.
#[derive(Default)]
#[doc(hidden)]
pub struct Ledger {
    /// Entries in use, and idle ones kept for reuse until the map is pruned.
    keys: Mutex<HashMap<LockKey, Arc<Entry>, MixState>>,
    /// What is known of a proxy between the source and the server: see
    /// [`Pooling`].
    pooling: std::sync::atomic::AtomicU8,
}

/// What is known of the pooling between a source and the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pooling {
    /// Not checked yet.
    Unknown = 0,
    /// Each client connection keeps its server session (direct, or session
    /// pooling), as far as a check could tell.
    SessionKept = 1,
    /// Consecutive statements of a client may run in different server sessions.
    Transaction = 2,
}

struct Entry {
    holds: Arc<RwLock<()>>,
    attempt: Arc<AsyncMutex<()>>,
    owners: Mutex<Vec<Owner>>,
    /// Exclusive waiters that asked to be handed the key, oldest first.
    relays: Mutex<VecDeque<Request>>,
    /// Waiters for the key that left no request.
    plain_waiters: AtomicUsize,
    /// A dropped guard's unlock, not sent yet (rule 4).
    parked: Mutex<Option<Parked>>,
}

/// Where a parked unlock waits: its key's entry. Held by the task that sends
/// the unlock; dropped before that task ran, it sends the unlock itself.
pub(crate) struct Parking {
    entry: Arc<Entry>,
    armed: bool,
}

impl Parking {
    pub(crate) fn put(&self, parked: Parked) {
        let previous = lock(&self.entry.parked).replace(parked);
        debug_assert!(previous.is_none(), "one exclusive hold per key");
    }

    /// Runs `send` on the parked unlock unless an acquisition took it first,
    /// with the slot locked: `send` queues the unlock and gives the hold up
    /// before anyone can find the slot empty (and the key's permit taken).
    pub(crate) fn send_with<R>(&mut self, send: impl FnOnce(Parked) -> R) -> Option<R> {
        self.armed = false;
        let mut slot = lock(&self.entry.parked);
        slot.take().map(send)
    }
}

impl Drop for Parking {
    /// Its task was dropped unpolled (the runtime is shutting down): the
    /// unlock goes now. (Once the task ran, the slot is left alone: what is
    /// parked there now is a later guard's, with a task of its own.)
    fn drop(&mut self) {
        if self.armed {
            self.send_with(Parked::unlock_now);
        }
    }
}

/// An exclusive waiter's request to be handed the key by its releasing holder.
pub(crate) struct Request {
    pub(crate) ask: Ask,
    task: Task,
    reply: oneshot::Sender<Relayed>,
}

impl Request {
    /// Hands the waiter what its relay came to; gives it back when the waiter
    /// is gone (its acquisition was cancelled or timed out meanwhile).
    pub(crate) fn reply(self, relayed: Relayed) -> Result<(), Relayed> {
        self.reply.send(relayed)
    }
}

/// A relay under way: the waiter it serves and the key's attempt permit.
pub(crate) struct Handoff {
    request: Request,
    attempt: OwnedMutexGuard<()>,
}

impl Handoff {
    /// The relay did not happen: its request goes unanswered (the waiter goes
    /// back to waiting for its permit), and the attempt permit is what is left
    /// to keep until the key's state is known.
    pub(crate) fn abandon(self) -> OwnedMutexGuard<()> {
        self.attempt
    }
}

struct Owner {
    ticket: u64,
    mode: Mode,
    task: Task,
}

/// The task (or, outside a tokio task, the thread) an acquisition runs in: the
/// identity a self-wait is recognised by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Task {
    Tokio(tokio::task::Id),
    Thread(std::thread::ThreadId),
}

impl Task {
    pub(crate) fn current() -> Task {
        match tokio::task::try_id() {
            Some(id) => Task::Tokio(id),
            None => Task::Thread(std::thread::current().id()),
        }
    }
}

enum Permit {
    Exclusive(#[allow(dead_code)] OwnedRwLockWriteGuard<()>),
    Shared(#[allow(dead_code)] OwnedRwLockReadGuard<()>),
}

/// A guard's place in the ledger: its permit and its row as an owner. Dropping it
/// gives both up; drop it only once the guard's unlock is queued on the
/// connection, so that the next local acquirer's statements come after it.
pub(crate) struct Hold {
    entry: Arc<Entry>,
    ticket: u64,
    _ledger: Arc<Ledger>,
    /// Always `Some` but while it is passed on to a relayed waiter.
    permit: Option<Permit>,
}

impl Hold {
    fn new(ledger: Arc<Ledger>, entry: Arc<Entry>, mode: Mode, task: Task, permit: Permit) -> Hold {
        let ticket = next_ticket();
        lock(&entry.owners).push(Owner { ticket, mode, task });
        Hold {
            entry,
            ticket,
            _ledger: ledger,
            permit: Some(permit),
        }
    }

    /// The ledger this hold is in.
    pub(crate) fn ledger(&self) -> &Arc<Ledger> {
        &self._ledger
    }

    /// Whether this hold's unlock may be parked (rule 4): an exclusive hold of
    /// a source that keeps server sessions, and nobody waiting for the key.
    pub(crate) fn may_park(&self) -> bool {
        matches!(self.permit, Some(Permit::Exclusive(_)))
            && self._ledger.pooling() == Pooling::SessionKept
            && self.entry.plain_waiters.load(Ordering::Acquire) == 0
            && lock(&self.entry.relays).iter().all(|r| r.reply.is_closed())
    }

    /// The entry's parking place.
    pub(crate) fn parking(&self) -> Parking {
        Parking {
            entry: self.entry.clone(),
            armed: true,
        }
    }

    /// This hold, as a hold of `task`'s (an acquisition that takes a parked
    /// unlock over).
    fn handed_to(mut self, task: Task) -> Hold {
        let permit = self.permit.take().expect("a hold has its permit");
        Hold::new(
            self._ledger.clone(),
            self.entry.clone(),
            Mode::Exclusive,
            task,
            permit,
        )
    }

    /// A relay for this exclusive hold, when an exclusive waiter asked for one
    /// and nobody else waits for the key: the key's attempt permit and the
    /// oldest live request. The hold keeps its permit until
    /// [`pass`](Hold::pass).
    pub(crate) fn relay(&self) -> Option<Handoff> {
        if !matches!(self.permit, Some(Permit::Exclusive(_)))
            || self._ledger.pooling() != Pooling::SessionKept
            || self.entry.plain_waiters.load(Ordering::Acquire) > 0
        {
            return None;
        }
        let mut relays = lock(&self.entry.relays);
        relays.retain(|r| !r.reply.is_closed());
        if relays.is_empty() {
            return None;
        }
        let attempt = self.entry.attempt.clone().try_lock_owned().ok()?;
        let request = relays.pop_front()?;
        Some(Handoff { request, attempt })
    }

    /// Passes this hold's permit to the waiter `handoff` serves, as a hold of
    /// the waiter's own, with the attempt permit when `attempting` (its try
    /// failed, and its acquisition goes on); `self` owns nothing after.
    pub(crate) fn pass(self, handoff: Handoff, attempting: bool) -> (Passed, Request) {
        let Handoff { request, attempt } = handoff;
        let hold = self.handed_to(request.task);
        let passed = match attempting {
            true => Passed::Attempt(Admission {
                hold,
                _attempt: attempt,
            }),
            false => Passed::Held(hold),
        };
        (passed, request)
    }

    /// The guard is gone (its unlock is queued): its task no longer owns the
    /// hold, though the permit stays until the unlock has gone through.
    pub(crate) fn disown(&self) {
        lock(&self.entry.owners).retain(|o| o.ticket != self.ticket);
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.disown();
    }
}

/// What a relay passes to its waiter.
pub(crate) enum Passed {
    /// The try was granted: a hold, for the waiter's guard.
    Held(Hold),
    /// The try was not granted: an admission, for the acquisition to go on.
    Attempt(Admission),
}

/// What [`Ledger::admit`] came to.
pub(crate) enum Admitted {
    /// The acquisition may go to the server.
    Fresh(Admission),
    /// A releasing guard sent the acquisition's try (see rule 3).
    Relayed(Relayed),
    /// The acquisition carries a dropped guard's parked unlock (rule 4): its
    /// try goes out in one statement after that unlock.
    Carrying(Admission, Carried),
}

#[cfg(test)]
impl Admitted {
    fn fresh(self) -> Admission {
        match self {
            Admitted::Fresh(admission) => admission,
            _ => panic!("not a fresh admission"),
        }
    }
}

/// An acquisition allowed to go to the server: its hold, and the key's attempt
/// permit until [`granted`](Admission::granted) or dropped.
pub(crate) struct Admission {
    hold: Hold,
    _attempt: OwnedMutexGuard<()>,
}

impl Admission {
    /// The acquisition was abandoned: its task no longer owns the hold, though
    /// the admission is kept until the attempt's cleanup has run.
    pub(crate) fn disown(&self) {
        self.hold.disown();
    }

    /// The attempt was granted and recorded: other attempts on the key may go.
    pub(crate) fn granted(self) -> Hold {
        self.hold
    }
}

/// Why an acquisition was not admitted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Another guard of this source holds the key in a conflicting mode (or an
    /// attempt on it is under way) and the wait allowed is over.
    Busy,
    /// The asking task itself owns a conflicting hold: waiting would never end.
    SelfWait,
}

/// How long an admission may wait in the process.
#[derive(Clone, Copy, Debug)]
pub(crate) enum LocalWait {
    Try,
    Until(Instant),
    Forever,
}

impl Ledger {
    /// Admits an acquisition of `key` in `mode` by `task`, waiting as `wait` says
    /// for conflicting holds of this source to end and for any attempt on the key
    /// to settle. An exclusive acquisition that must wait and brings an `ask`
    /// leaves a relay request (rule 3).
    ///
    /// Cancel-safe: a dropped admission gives back whatever it had obtained, and
    /// a relay whose waiter is gone is undone by the releasing side.
    pub(crate) async fn admit(
        self: &Arc<Self>,
        key: LockKey,
        mode: Mode,
        task: Task,
        wait: LocalWait,
        ask: Option<Ask>,
    ) -> Result<Admitted, Refusal> {
        let entry = self.entry(key);
        let mut permit = try_permit(&entry, mode);
        if permit.is_none() {
            // With the slot locked: whoever emptied it before has queued the
            // unlock and given the hold up by now.
            let mut slot = lock(&entry.parked);
            if let Some(parked) = slot.take() {
                let attempt = match (mode, &ask) {
                    (Mode::Exclusive, Some(_)) => entry.attempt.clone().try_lock_owned().ok(),
                    _ => None,
                };
                match attempt {
                    Some(attempt) => {
                        drop(slot);
                        let (hold, carried) = parked.carry();
                        let admission = Admission {
                            hold: hold.handed_to(task),
                            _attempt: attempt,
                        };
                        return Ok(Admitted::Carrying(admission, carried));
                    }
                    None => parked.unlock_now(),
                }
            }
            permit = try_permit(&entry, mode);
        }
        let permit = match permit {
            Some(permit) => permit,
            None => {
                if matches!(wait, LocalWait::Try) {
                    return Err(Refusal::Busy);
                }
                // Without a timeout a wait for the task's own hold never ends.
                // (With one it ends; the guard may also have moved to another
                // task, which this check cannot see.)
                let own = lock(&entry.owners)
                    .iter()
                    .any(|o| o.task == task && o.mode.conflicts_with(mode));
                if own && matches!(wait, LocalWait::Forever) {
                    return Err(Refusal::SelfWait);
                }
                match (mode, ask) {
                    (Mode::Exclusive, Some(ask)) => {
                        match within(wait, relay_or_permit(&entry, ask, task)).await {
                            None => return Err(Refusal::Busy),
                            Some(Err(relayed)) => return Ok(Admitted::Relayed(relayed)),
                            Some(Ok(permit)) => permit,
                        }
                    }
                    _ => {
                        let _waiting = Waiting::on(&entry);
                        let permit = async {
                            match mode {
                                Mode::Exclusive => {
                                    Permit::Exclusive(entry.holds.clone().write_owned().await)
                                }
                                Mode::Shared => {
                                    Permit::Shared(entry.holds.clone().read_owned().await)
                                }
                            }
                        };
                        within(wait, permit).await.ok_or(Refusal::Busy)?
                    }
                }
            }
        };
        let hold = Hold::new(self.clone(), entry.clone(), mode, task, permit);
        let attempt = match entry.attempt.clone().try_lock_owned() {
            Ok(attempt) => attempt,
            Err(_) if matches!(wait, LocalWait::Try) => return Err(Refusal::Busy),
            Err(_) => within(wait, entry.attempt.clone().lock_owned())
                .await
                .ok_or(Refusal::Busy)?,
        };
        Ok(Admitted::Fresh(Admission {
            hold,
            _attempt: attempt,
        }))
    }

    pub(crate) fn pooling(&self) -> Pooling {
        match self.pooling.load(Ordering::Relaxed) {
            1 => Pooling::SessionKept,
            2 => Pooling::Transaction,
            _ => Pooling::Unknown,
        }
    }

    /// Records what a check found; a transaction pooler, once seen, stays known.
    pub(crate) fn set_pooling(&self, pooling: Pooling) {
        if self.pooling() != Pooling::Transaction {
            self.pooling.store(pooling as u8, Ordering::Relaxed);
        }
    }

    fn entry(&self, key: LockKey) -> Arc<Entry> {
        let mut keys = lock(&self.keys);
        if let Some(entry) = keys.get(&key) {
            return entry.clone();
        }
        let entry = Arc::new(Entry {
            holds: Arc::new(RwLock::new(())),
            attempt: Arc::new(AsyncMutex::new(())),
            owners: Mutex::new(Vec::new()),
            relays: Mutex::new(VecDeque::new()),
            plain_waiters: AtomicUsize::new(0),
            parked: Mutex::new(None),
        });
        // An entry only the map refers to is idle: kept for the key's next
        // acquisition (no allocation per lock cycle), dropped when the map prunes.
        if keys.len() >= 64 && keys.len().is_power_of_two() {
            keys.retain(|_, e| Arc::strong_count(e) > 1);
        }
        keys.insert(key, entry.clone());
        entry
    }

    /// The number of guards of this source holding `key` (for diagnostics and
    /// tests).
    #[cfg(test)]
    fn owners(&self, key: LockKey) -> usize {
        lock(&self.keys)
            .get(&key)
            .map_or(0, |e| lock(&e.owners).len())
    }
}

/// Waits for the exclusive permit, or for a releasing guard to relay the key
/// (`Err`), whichever comes first. A relay that fails on the releasing side
/// drops the request unanswered, and the wait for the permit goes on.
async fn relay_or_permit(entry: &Arc<Entry>, ask: Ask, task: Task) -> Result<Permit, Relayed> {
    let (reply, relayed) = oneshot::channel();
    {
        // Requests whose waiters went on without a relay go first.
        let mut relays = lock(&entry.relays);
        relays.retain(|r| !r.reply.is_closed());
        relays.push_back(Request { ask, task, reply });
    }
    let permit = std::pin::pin!(entry.holds.clone().write_owned());
    // The relay's answer is polled first.
    match futures_util::future::select(relayed, permit).await {
        Either::Left((Ok(relayed), _)) => Err(relayed),
        Either::Left((Err(_), permit)) => Ok(Permit::Exclusive(permit.await)),
        Either::Right((permit, _)) => Ok(Permit::Exclusive(permit)),
    }
}

/// A waiter without a relay request, counted while it waits.
struct Waiting<'a>(&'a Entry);

impl<'a> Waiting<'a> {
    fn on(entry: &'a Entry) -> Waiting<'a> {
        entry.plain_waiters.fetch_add(1, Ordering::AcqRel);
        Waiting(entry)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.plain_waiters.fetch_sub(1, Ordering::AcqRel);
    }
}

fn try_permit(entry: &Entry, mode: Mode) -> Option<Permit> {
    match mode {
        Mode::Exclusive => entry
            .holds
            .clone()
            .try_write_owned()
            .ok()
            .map(Permit::Exclusive),
        Mode::Shared => entry
            .holds
            .clone()
            .try_read_owned()
            .ok()
            .map(Permit::Shared),
    }
}

async fn within<F: std::future::Future>(wait: LocalWait, work: F) -> Option<F::Output> {
    match wait {
        LocalWait::Try => None,
        LocalWait::Forever => Some(work.await),
        LocalWait::Until(deadline) => tokio::time::timeout_at(deadline.into(), work).await.ok(),
    }
}

/// Lock keys are hashes already (or users' integers): a multiply-and-mix hash
/// spreads them well enough, for a fraction of SipHash's cost.
#[derive(Clone, Copy, Default)]
pub(crate) struct MixState;

impl std::hash::BuildHasher for MixState {
    type Hasher = MixHasher;
    fn build_hasher(&self) -> MixHasher {
        MixHasher(0)
    }
}

#[derive(Default)]
pub(crate) struct MixHasher(u64);

impl std::hash::Hasher for MixHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn write_i64(&mut self, n: i64) {
        self.write_u64(n as u64);
    }

    fn write_i32(&mut self, n: i32) {
        self.write_u64(n as u32 as u64);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        // Fold the high bits down: the table picks buckets by the low ones.
        self.0 ^ (self.0 >> 29)
    }
}

fn next_ticket() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The ledger of a pool: one per pool, shared by every clone of it, alive as long
/// as the pool is.
pub(crate) fn of_pool(pool: &deadpool_postgres::Pool) -> Arc<Ledger> {
    type Entry = (usize, deadpool_postgres::WeakPool, Arc<Ledger>);
    static POOLS: Mutex<Vec<Entry>> = Mutex::new(Vec::new());
    // The manager lives inside the pool's shared allocation: the same address
    // for every clone of the pool, for as long as the pool lives.
    let id = pool.manager() as *const deadpool_postgres::Manager as usize;
    let mut pools = lock(&POOLS);
    pools.retain(|(_, weak, _)| weak.upgrade().is_some());
    if let Some((_, _, ledger)) = pools.iter().find(|(i, _, _)| *i == id) {
        return ledger.clone();
    }
    let ledger = Arc::new(Ledger::default());
    pools.push((id, pool.weak(), ledger.clone()));
    ledger
}

/// The turn of one transaction (by address): transaction-level acquisitions on it
/// take turns, so that none runs inside another's savepoint or between another's
/// failed wait and its rollback.
pub(crate) fn turn_of(address: usize) -> Arc<AsyncMutex<()>> {
    static TURNS: Mutex<Vec<(usize, Weak<AsyncMutex<()>>)>> = Mutex::new(Vec::new());
    let mut turns = lock(&TURNS);
    turns.retain(|(_, t)| t.strong_count() > 0);
    if let Some(turn) = turns
        .iter()
        .find(|(a, _)| *a == address)
        .and_then(|(_, t)| t.upgrade())
    {
        return turn;
    }
    let turn = Arc::new(AsyncMutex::new(()));
    turns.push((address, Arc::downgrade(&turn)));
    turn
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn idle_entries_are_reused_and_pruned() {
        let ledger = Arc::new(Ledger::default());
        let me = Task::current();
        let first = ledger.entry(LockKey::Big(1));
        let address = Arc::as_ptr(&first);
        drop(first);
        // The idle entry was kept (the map alone refers to it): the key's next
        // acquisition finds it and allocates nothing.
        assert_eq!(
            lock(&ledger.keys)
                .get(&LockKey::Big(1))
                .map(Arc::strong_count),
            Some(1)
        );
        assert_eq!(Arc::as_ptr(&ledger.entry(LockKey::Big(1))), address);
        for k in 0..10_000 {
            let hold = ledger
                .admit(LockKey::Big(k), Mode::Exclusive, me, LocalWait::Try, None)
                .await
                .unwrap()
                .fresh()
                .granted();
            drop(hold);
        }
        // Idle entries go when the map grows: it stays small however many keys
        // went through it.
        assert!(
            lock(&ledger.keys).len() <= 128,
            "{}",
            lock(&ledger.keys).len()
        );
        // A held key's entry is never pruned.
        let held = ledger
            .admit(LockKey::Big(-1), Mode::Exclusive, me, LocalWait::Try, None)
            .await
            .unwrap()
            .fresh()
            .granted();
        for k in 10_000..20_000 {
            drop(ledger.entry(LockKey::Big(k)));
        }
        assert_eq!(ledger.owners(LockKey::Big(-1)), 1);
        assert_eq!(
            ledger
                .admit(LockKey::Big(-1), Mode::Exclusive, me, LocalWait::Try, None)
                .await
                .err(),
            Some(Refusal::Busy)
        );
        drop(held);
    }

    #[tokio::test]
    async fn exclusive_holds_exclude_and_shared_ones_stack() {
        let ledger = Arc::new(Ledger::default());
        let key = LockKey::Big(7);
        let me = Task::current();
        let a = ledger
            .admit(key, Mode::Shared, me, LocalWait::Try, None)
            .await
            .unwrap()
            .fresh()
            .granted();
        let b = ledger
            .admit(key, Mode::Shared, me, LocalWait::Try, None)
            .await
            .unwrap()
            .fresh()
            .granted();
        assert_eq!(ledger.owners(key), 2);
        assert_eq!(
            ledger
                .admit(key, Mode::Exclusive, me, LocalWait::Try, None)
                .await
                .err(),
            Some(Refusal::Busy)
        );
        // The same task waiting (without a timeout) for its own shared holds
        // would wait forever.
        assert_eq!(
            ledger
                .admit(key, Mode::Exclusive, me, LocalWait::Forever, None)
                .await
                .err(),
            Some(Refusal::SelfWait)
        );
        drop((a, b));
        assert_eq!(ledger.owners(key), 0);
        let c = ledger
            .admit(key, Mode::Exclusive, me, LocalWait::Try, None)
            .await
            .unwrap()
            .fresh();
        // An attempt under way keeps other attempts on the key out.
        let until = Instant::now() + Duration::from_millis(20);
        let other = tokio::spawn({
            let ledger = ledger.clone();
            async move {
                ledger
                    .admit(
                        key,
                        Mode::Exclusive,
                        Task::current(),
                        LocalWait::Until(until),
                        None,
                    )
                    .await
                    .err()
            }
        });
        assert_eq!(other.await.unwrap(), Some(Refusal::Busy));
        drop(c);
    }
}
