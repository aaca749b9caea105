//! Throttling of failed authentication and bounded password hashing (docs/security.md,
//! "Abuse resistance").
//!
//! * Failed dashboard logins (password and token), unknown management API tokens and failed DDI
//!   device authentication are counted per account and per client address. Past a free allowance
//!   each further failure blocks the key for an exponentially growing time (1 s, 2 s, 4 s, … up
//!   to a cap); a blocked key is answered `429 Too Many Requests` with `Retry-After` before any
//!   database lookup or password hashing, and that answer is held back until the block ends (at
//!   most `--throttle-hold-ms`, 1 s by default): a client that keeps guessing on the same
//!   connections is slowed to one answer a second per connection instead of costing the server
//!   (and the devices it serves) thousands of answers a second. Counts leak away at a fixed rate, so a steady trickle
//!   below that rate (a few misconfigured devices behind one NAT) is never blocked.
//! * The tables live in memory, per replica, each capped at [`MAX_KEYS`] keys (the least
//!   recently failed key is forgotten first), keys stored as 64-bit keyed hashes so an attacker
//!   choosing long user names cannot grow them.
//! * argon2 verifications run at most [`hash_concurrency`] at a time on reused memory; a bounded
//!   number wait, more are answered `503` at once.
//!
//! Handlers reach the tables through a task-local set by the [`scope`] middleware around every
//! request (so `auth` needs no extra parameters); the dashboard's in-process management API
//! calls run inside the browser request's scope and are marked [`in_process`]: the session was
//! authenticated just before, so they are neither refused nor counted.

use crate::error::ApiError;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use hashlink::LruCache;
use std::hash::{BuildHasher, Hash};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Keys tracked per table; beyond it the least recently failed key is forgotten.
pub const MAX_KEYS: usize = 65_536;

/// How one table counts failures and blocks.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Failures allowed (on top of the leak) before the first block.
    pub free: f64,
    /// Failures forgiven per second.
    pub leak_per_sec: f64,
    /// The first block; each further failure doubles it.
    pub base: Duration,
    /// The longest block.
    pub cap: Duration,
}

/// A dashboard account (user name): strict. 5 failures, then 1 s, 2 s, … 15 min; one failure
/// forgiven every 15 minutes; a successful login clears the account.
pub const PASSWORD_ACCOUNT: Policy = Policy {
    free: 5.0,
    leak_per_sec: 1.0 / 900.0,
    base: Duration::from_secs(1),
    cap: Duration::from_secs(15 * 60),
};

/// A client address on the human side (dashboard logins by password or token, management API
/// Bearer tokens): 50 failures, then 1 s … 5 min; one failure forgiven every 2 s (30 a minute).
pub const MANAGEMENT_ADDRESS: Policy = Policy {
    free: 50.0,
    leak_per_sec: 0.5,
    base: Duration::from_secs(1),
    cap: Duration::from_secs(5 * 60),
};

/// One device (tenant and controller id) as seen from one client address: 10 failures, then
/// 1 s … 5 min; one forgiven a minute; a successful authentication clears it. Keyed with the
/// address so nobody elsewhere can lock a device out by guessing its token (device tokens are
/// random 190-bit strings; guessing them is hopeless, the limit only bounds the work).
pub const DEVICE_ACCOUNT: Policy = Policy {
    free: 10.0,
    leak_per_sec: 1.0 / 60.0,
    base: Duration::from_secs(1),
    cap: Duration::from_secs(5 * 60),
};

/// A client address on the device side (DDI and TUF requests): generous, since a whole fleet may
/// share one NAT address: 1000 failures, then 1 s … 60 s; 10 failures a second forgiven.
pub const DEVICE_ADDRESS: Policy = Policy {
    free: 1000.0,
    leak_per_sec: 10.0,
    base: Duration::from_secs(1),
    cap: Duration::from_secs(60),
};

#[derive(Debug, Clone, Copy)]
struct Entry {
    score: f64,
    at: Instant,
    blocked_until: Option<Instant>,
}

/// Failure counts of one kind of key.
pub struct Table {
    policy: Policy,
    hasher: std::collections::hash_map::RandomState,
    entries: Mutex<LruCache<u64, Entry>>,
}

impl Table {
    /// An empty table with [`MAX_KEYS`] keys at most.
    pub fn new(policy: Policy) -> Table {
        Table::with_capacity(policy, MAX_KEYS)
    }

    /// An empty table with `capacity` keys at most (at least 1); tests use small ones.
    pub fn with_capacity(policy: Policy, capacity: usize) -> Table {
        Table {
            policy,
            hasher: Default::default(),
            entries: Mutex::new(LruCache::new(capacity.max(1))),
        }
    }

    fn key(&self, key: impl Hash) -> u64 {
        self.hasher.hash_one(key)
    }

    /// `Err(retry_after)` while `key` is blocked.
    pub fn check(&self, key: impl Hash, now: Instant) -> Result<(), Duration> {
        let key = self.key(key);
        let Ok(entries) = self.entries.lock() else {
            return Ok(());
        };
        match entries.peek(&key).and_then(|e| e.blocked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Counts a failure of `key`, blocking it once past the allowance.
    pub fn fail(&self, key: impl Hash, now: Instant) {
        let key = self.key(key);
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        let policy = self.policy;
        if !entries.contains_key(&key) {
            let fresh = Entry {
                score: 0.0,
                at: now,
                blocked_until: None,
            };
            entries.insert(key, fresh);
        }
        let Some(entry) = entries.get_mut(&key) else {
            return;
        };
        let elapsed = now.saturating_duration_since(entry.at).as_secs_f64();
        entry.score = (entry.score - elapsed * policy.leak_per_sec).max(0.0) + 1.0;
        entry.at = now;
        let excess = entry.score - policy.free;
        if excess > 0.0 {
            // 1 s for the first failure past the allowance, doubling up to the cap.
            let doublings = (excess.ceil() as u32).saturating_sub(1).min(30);
            let block = policy
                .base
                .saturating_mul(1u32 << doublings)
                .min(policy.cap);
            entry.blocked_until = Some(now + block);
        }
    }

    /// Forgets `key` (a successful login).
    pub fn clear(&self, key: impl Hash) {
        let key = self.key(key);
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(&key);
        }
    }

    /// Keys tracked now (blocked or not).
    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The per-replica throttling state: four tables and the password-hashing limiter.
pub struct Guard {
    /// `false` (`--no-auth-throttle`): nothing is counted or refused; hashing stays bounded.
    pub enabled: bool,
    /// How long a refused (`429`) answer is held back at most.
    pub refusal_hold: Duration,
    /// Dashboard accounts (user names), from every address together ([`PASSWORD_ACCOUNT`]).
    pub password_accounts: Table,
    /// Client addresses on the human side: dashboard logins and Bearer tokens
    /// ([`MANAGEMENT_ADDRESS`]).
    pub management_addresses: Table,
    /// Devices (tenant and controller id) per client address ([`DEVICE_ACCOUNT`]).
    pub device_accounts: Table,
    /// Client addresses on the device side: DDI and TUF ([`DEVICE_ADDRESS`]).
    pub device_addresses: Table,
    /// Bounds the argon2 verifications of dashboard logins.
    pub hashing: Hashing,
}

impl Guard {
    /// The guard of one server; `--no-auth-throttle` turns the throttling off (not the bounded
    /// hashing).
    pub fn for_config(config: &crate::Config) -> Arc<Guard> {
        let mut guard = Guard::new(!config.no_auth_throttle);
        guard.refusal_hold = Duration::from_millis(config.throttle_hold_ms);
        Arc::new(guard)
    }

    /// A guard with the default tables, a 1 s refusal hold and [`hash_concurrency`] hashing slots.
    pub fn new(enabled: bool) -> Guard {
        Guard {
            enabled,
            refusal_hold: Duration::from_secs(1),
            password_accounts: Table::new(PASSWORD_ACCOUNT),
            management_addresses: Table::new(MANAGEMENT_ADDRESS),
            device_accounts: Table::new(DEVICE_ACCOUNT),
            device_addresses: Table::new(DEVICE_ADDRESS),
            hashing: Hashing::new(hash_concurrency()),
        }
    }
}

/// What the [`scope`] middleware gives a request.
#[derive(Clone)]
struct RequestScope {
    guard: Arc<Guard>,
    client: Option<IpAddr>,
    in_process: bool,
    /// Milliseconds the answer is held back before it is sent (set when the request is refused).
    hold_ms: Arc<AtomicU64>,
}

tokio::task_local! {
    static SCOPE: RequestScope;
}

/// A compact, process-keyed hash of an account name (fixed size whatever the name's length).
fn account_key(account: impl Hash) -> u64 {
    static HASHER: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    HASHER.get_or_init(Default::default).hash_one(account)
}

fn fallback_guard() -> Arc<Guard> {
    static GUARD: OnceLock<Arc<Guard>> = OnceLock::new();
    GUARD.get_or_init(|| Arc::new(Guard::new(true))).clone()
}

fn current() -> RequestScope {
    SCOPE
        .try_with(RequestScope::clone)
        .unwrap_or_else(|_| RequestScope {
            guard: fallback_guard(),
            client: None,
            in_process: false,
            hold_ms: Arc::default(),
        })
}

/// The address a client is counted under: IPv4 as is, IPv6 by its /64 (one host usually holds a
/// whole /64), IPv4-mapped IPv6 as IPv4.
pub fn client_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                IpAddr::from(octets)
            }
        },
    }
}

/// Middleware around every request: makes the replica's [`Guard`] and the client address
/// (`ConnectInfo`, absent for in-process requests and tests that call the router directly)
/// available to the authentication code.
pub async fn scope(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| client_key(addr.ip()));
    let hold_ms = Arc::new(AtomicU64::new(0));
    let scope = RequestScope {
        guard,
        client,
        in_process: false,
        hold_ms: hold_ms.clone(),
    };
    let response = SCOPE.scope(scope, next.run(request)).await;
    let hold = hold_ms.load(Ordering::Relaxed);
    if hold > 0 {
        tokio::time::sleep(Duration::from_millis(hold)).await;
    }
    response
}

/// Runs an in-process request of the dashboard (already authenticated by its session): its
/// token checks are neither refused nor counted.
pub async fn in_process<F: std::future::Future>(future: F) -> F::Output {
    let mut scope = current();
    scope.in_process = true;
    SCOPE.scope(scope, future).await
}

/// A refused request: blocked for `retry_after`.
#[derive(Debug, Clone, Copy)]
pub struct Throttled {
    /// How long the key stays blocked from now (sent rounded up, [`Throttled::retry_after_secs`]).
    pub retry_after: Duration,
}

impl Throttled {
    /// Whole seconds for `Retry-After` (at least 1).
    pub fn retry_after_secs(&self) -> u64 {
        let secs = self.retry_after.as_secs();
        if self.retry_after.subsec_nanos() > 0 || secs == 0 {
            secs + 1
        } else {
            secs
        }
    }
}

impl From<Throttled> for ApiError {
    fn from(throttled: Throttled) -> ApiError {
        ApiError::TooManyRequests(
            format!(
                "too many failed authentication attempts; retry in {} s",
                throttled.retry_after_secs()
            ),
            throttled.retry_after_secs(),
        )
    }
}

#[derive(Clone, Copy)]
enum Side {
    Management,
    Device,
}

/// One authentication attempt. Dropped without [`Attempt::succeeded`], it counts as a failure of
/// its account and its client address.
#[must_use = "an attempt dropped without succeeded() counts as a failure"]
pub struct Attempt {
    scope: Option<RequestScope>,
    side: Side,
    account: Option<u64>,
    done: bool,
}

impl Attempt {
    fn begin(side: Side, account: Option<u64>) -> Result<Attempt, Throttled> {
        let scope = current();
        if scope.in_process || !scope.guard.enabled {
            return Ok(Attempt {
                scope: None,
                side,
                account,
                done: true,
            });
        }
        let now = Instant::now();
        let guard = &scope.guard;
        let (addresses, accounts) = match side {
            Side::Management => (&guard.management_addresses, &guard.password_accounts),
            Side::Device => (&guard.device_addresses, &guard.device_accounts),
        };
        let blocked = scope
            .client
            .map_or(Ok(()), |client| addresses.check(client, now))
            .and_then(|()| account.map_or(Ok(()), |account| accounts.check(account, now)));
        if let Err(retry_after) = blocked {
            // Held until the block ends (at most refusal_hold); Retry-After counts from the answer.
            let hold = retry_after.min(guard.refusal_hold);
            scope
                .hold_ms
                .fetch_max(hold.as_millis() as u64, Ordering::Relaxed);
            return Err(Throttled {
                retry_after: retry_after.saturating_sub(hold),
            });
        }
        Ok(Attempt {
            scope: Some(scope),
            side,
            account,
            done: false,
        })
    }

    /// A management API Bearer token or a dashboard token login (no account before the token
    /// is known: counted per client address).
    pub fn token() -> Result<Attempt, Throttled> {
        Attempt::begin(Side::Management, None)
    }

    /// A dashboard password login of `user`.
    pub fn password(user: &str) -> Result<Attempt, Throttled> {
        let account = account_key(("user", user));
        Attempt::begin(Side::Management, Some(account))
    }

    /// A DDI request for `tenant`/`controller_id`.
    pub fn device(tenant: &str, controller_id: &str) -> Result<Attempt, Throttled> {
        let client = current().client;
        let account = account_key(("device", tenant, controller_id, client));
        Attempt::begin(Side::Device, Some(account))
    }

    /// The credentials were right: clears the account's failures.
    pub fn succeeded(mut self) {
        self.done = true;
        if let (Some(scope), Some(account)) = (&self.scope, self.account) {
            match self.side {
                Side::Management => scope.guard.password_accounts.clear(account),
                Side::Device => scope.guard.device_accounts.clear(account),
            }
        }
    }
}

impl Attempt {
    /// The attempt could not be decided (server busy, database error): not counted.
    pub fn abandon(mut self) {
        self.done = true;
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let Some(scope) = &self.scope else {
            return;
        };
        let now = Instant::now();
        let guard = &scope.guard;
        let (addresses, accounts) = match self.side {
            Side::Management => (&guard.management_addresses, &guard.password_accounts),
            Side::Device => (&guard.device_addresses, &guard.device_accounts),
        };
        if let Some(client) = scope.client {
            addresses.fail(client, now);
        }
        if let Some(account) = self.account {
            accounts.fail(account, now);
        }
    }
}

// ---------- bounded password hashing ----------

/// argon2 verifications at a time: the available cores, at most 8 (each holds 19 MiB).
pub fn hash_concurrency() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 8)
}

/// Verifications that may wait for a slot, per slot.
const QUEUE_PER_SLOT: usize = 4;

/// Largest argon2 memory accepted from a stored hash (256 MiB); keel's own hashes use 19 MiB.
const MAX_BLOCKS: usize = 256 * 1024;

/// The server is busy hashing other passwords: answer 503 with `Retry-After: 1`.
#[derive(Debug, Clone, Copy)]
pub struct Busy;

/// At most `slots` argon2 verifications at a time, each on one of `slots` reused memory areas
/// (so the allocator never churns 19 MiB blocks across threads: RSS stays flat), at most
/// `slots × QUEUE_PER_SLOT` waiting; more are refused at once.
pub struct Hashing {
    slots: Arc<tokio::sync::Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
    memory: Arc<Mutex<Vec<Vec<argon2::Block>>>>,
}

impl Hashing {
    /// `slots` verifications at a time (give at least 1), `QUEUE_PER_SLOT × slots` waiting at most.
    pub fn new(slots: usize) -> Hashing {
        Hashing {
            slots: Arc::new(tokio::sync::Semaphore::new(slots)),
            waiting: AtomicUsize::new(0),
            max_waiting: slots * QUEUE_PER_SLOT,
            memory: Arc::new(Mutex::new(Vec::new())),
        }
    }

    async fn verify(&self, password: String, stored: String) -> Result<bool, Busy> {
        /// Counts a waiting verification until dropped (also when the client goes away).
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let waiting = Waiting(&self.waiting);
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
            return Err(Busy);
        }
        let permit = self.slots.clone().acquire_owned().await;
        drop(waiting);
        // The permit moves into the blocking task: a client that goes away does not free its
        // slot before the hash is done.
        let Ok(permit) = permit else {
            return Err(Busy);
        };
        let memory = self.memory.clone();
        let matches = tokio::task::spawn_blocking(move || {
            let mut blocks = memory
                .lock()
                .ok()
                .and_then(|mut pool| pool.pop())
                .unwrap_or_default();
            let matches = verify_with_memory(password.as_bytes(), &stored, &mut blocks);
            if let Ok(mut pool) = memory.lock() {
                pool.push(blocks);
            }
            drop(permit);
            matches
        })
        .await
        .unwrap_or(false);
        Ok(matches)
    }
}

/// Checks `password` against the argon2 PHC string `stored` in bounded concurrency;
/// `Err(Busy)` when too many are already waiting.
pub async fn verify_password(password: &str, stored: &str) -> Result<bool, Busy> {
    let scope = current();
    scope
        .guard
        .hashing
        .verify(password.to_string(), stored.to_string())
        .await
}

/// argon2 verification (what `PasswordVerifier::verify_password` does) on caller-provided memory.
fn verify_with_memory(password: &[u8], stored: &str, blocks: &mut Vec<argon2::Block>) -> bool {
    use argon2::password_hash::PasswordHash;
    use subtle::ConstantTimeEq;
    let Ok(hash) = PasswordHash::new(stored) else {
        return false;
    };
    let Ok(params) = argon2::Params::try_from(&hash) else {
        return false;
    };
    let Ok(algorithm) = argon2::Algorithm::try_from(hash.algorithm) else {
        return false;
    };
    let version = match hash.version.map(argon2::Version::try_from) {
        None => argon2::Version::default(),
        Some(Ok(version)) => version,
        Some(Err(_)) => return false,
    };
    let (Some(expected), Some(salt)) = (hash.hash, hash.salt) else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let needed = params.block_count();
    if needed > MAX_BLOCKS {
        return false;
    }
    if blocks.len() < needed {
        blocks.resize(needed, argon2::Block::default());
    }
    let mut out = [0u8; 64];
    let Some(out) = out.get_mut(..expected.len()) else {
        return false;
    };
    argon2::Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password, salt, out, &mut blocks[..])
        .is_ok()
        && bool::from(expected.as_bytes().ct_eq(&out[..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_past_the_allowance_and_leaks() {
        let policy = Policy {
            free: 3.0,
            leak_per_sec: 1.0,
            base: Duration::from_secs(1),
            cap: Duration::from_secs(8),
        };
        let table = Table::new(policy);
        let t0 = Instant::now();
        for _ in 0..3 {
            table.fail("k", t0);
            assert!(table.check("k", t0).is_ok());
        }
        table.fail("k", t0);
        assert_eq!(table.check("k", t0), Err(Duration::from_secs(1)));
        table.fail("k", t0);
        assert_eq!(table.check("k", t0), Err(Duration::from_secs(2)));
        for _ in 0..10 {
            table.fail("k", t0);
        }
        assert_eq!(table.check("k", t0), Err(Duration::from_secs(8)), "capped");
        assert!(table.check("other", t0).is_ok());
        // 20 s later the score leaked back to 0: the next failure is free again.
        let later = t0 + Duration::from_secs(20);
        assert!(table.check("k", later).is_ok());
        table.fail("k", later);
        assert!(table.check("k", later).is_ok());
        table.clear("k");
        assert!(table.is_empty());
    }

    #[test]
    fn tables_are_bounded() {
        let table = Table::with_capacity(PASSWORD_ACCOUNT, 100);
        let now = Instant::now();
        for i in 0..1000 {
            table.fail(i, now);
        }
        assert_eq!(table.len(), 100);
    }

    #[test]
    fn ipv6_counted_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(client_key(mapped), "10.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn verifies_like_the_argon2_crate() {
        use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
        let salt = SaltString::generate(&mut OsRng);
        let params = argon2::Params::new(1024, 2, 1, None).unwrap();
        let stored =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
                .hash_password(b"correct horse", &salt)
                .unwrap()
                .to_string();
        let mut blocks = Vec::new();
        assert!(verify_with_memory(b"correct horse", &stored, &mut blocks));
        assert!(!verify_with_memory(b"wrong horse", &stored, &mut blocks));
        assert!(!verify_with_memory(
            b"correct horse",
            "not a hash",
            &mut blocks
        ));
        assert_eq!(blocks.len(), 1024);
    }
}
