//! Generation of crash states from a write log.
//!
//! The log is cut into intervals at its barriers (FLUSH or FUA entries). At the start of each
//! interval everything before is durable (the "committed" state); a power cut inside the
//! interval leaves any subset of the interval's writes on the disk, in any order where writes
//! overlap, and a write in flight may be torn. Per interval this generates:
//!
//! - `flush`: the committed state;
//! - `prefixN`: the first N pending writes in log order (N = 1 .. m-1; all m is the next
//!   interval's committed state);
//! - `omitJ`: every pending write except write J (all of them, up to a cap);
//! - `randN`: a random subset of the pending writes in random order, then, at random, one
//!   pending write torn (a prefix of its sectors) and one sector of a pending write replaced by
//!   random bytes ("garbage").
//!
//! The random choices come from a SplitMix64 generator seeded from the run's seed, the phase
//! and the interval number, so one state can be regenerated from (seed, phase, id).

use std::fmt;

use anyhow::{bail, Result};

use crate::disk::{Disk, SECTOR};
use crate::wlog::{Entry, Log};

/// SplitMix64: small, fast, reproducible everywhere.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

fn phase_seed(seed: u64, phase: &str, interval: usize) -> u64 {
    let mut h = seed ^ 0x5851_f42d_4c95_7f2d;
    for b in phase.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    Rng::new(h ^ (interval as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)).next_u64()
}

/// Kind of a generated state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Everything up to a barrier.
    Flush,
    /// The first N pending writes.
    Prefix(usize),
    /// All pending writes except number J.
    Omit(usize),
    /// Random subset/order/tear/garbage number N.
    Random(usize),
    /// The whole log (when it does not end with a barrier).
    Final,
}

/// Identity of a state: `PHASE/iINTERVAL/KIND`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateId {
    /// Recording phase (install, boot, ...).
    pub phase: String,
    /// Interval number (0 = before the first barrier).
    pub interval: usize,
    /// What kind of state.
    pub kind: Kind,
}

impl fmt::Display for StateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/i{}/", self.phase, self.interval)?;
        match self.kind {
            Kind::Flush => write!(f, "flush"),
            Kind::Prefix(n) => write!(f, "prefix{n}"),
            Kind::Omit(j) => write!(f, "omit{j}"),
            Kind::Random(n) => write!(f, "rand{n}"),
            Kind::Final => write!(f, "final"),
        }
    }
}

/// What a state is made of, for reports and for deciding what the state belongs to.
#[derive(Debug, Clone, Default)]
pub struct Info {
    /// Index of the first log entry of the interval.
    pub interval_start: usize,
    /// Highest log entry index whose data is (partly) on the disk, if any.
    pub last_entry: Option<usize>,
    /// Pending writes in the interval.
    pub pending: usize,
    /// For random states: what was done.
    pub detail: String,
}

/// Generation parameters.
#[derive(Debug, Clone)]
pub struct Options {
    /// Seed of the random states.
    pub seed: u64,
    /// Random states per interval (intervals with pending writes only).
    pub random_per_interval: usize,
    /// At most this many `omit` states per interval (spread evenly when there are more writes).
    pub omit_cap: usize,
}

/// Counts of a replay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// States generated and handed to the checker.
    pub states: usize,
    /// Barrier entries (intervals - 1).
    pub barriers: usize,
    /// Write entries.
    pub writes: usize,
    /// Discard entries (not applied: a discarded range may read back as old data or zeros;
    /// keeping the old data is one of the allowed outcomes).
    pub discards: usize,
}

fn apply(disk: &mut Disk, log: &Log, e: &Entry) -> Result<()> {
    disk.write(e.sector, log.data(e))
}

/// Replays `log` onto `disk`, calling `check` for every generated state (the disk holds that
/// state during the call; the checker must not write to it). `check` returns `false` to stop.
pub fn replay(
    log: &Log,
    disk: &mut Disk,
    phase: &str,
    opts: &Options,
    mut check: impl FnMut(&StateId, &Info, &mut Disk) -> Result<bool>,
) -> Result<Summary> {
    if log.sector_size as usize != SECTOR {
        bail!(
            "the log's sector size is {}, only {SECTOR} is supported (record with log-sector-size=512)",
            log.sector_size
        );
    }
    let entries = &log.entries;
    let mut summary = Summary {
        barriers: entries.iter().filter(|e| e.is_barrier()).count(),
        writes: entries.iter().filter(|e| e.is_write()).count(),
        discards: entries
            .iter()
            .filter(|e| e.flags & crate::wlog::FLAG_DISCARD != 0)
            .count(),
        ..Summary::default()
    };
    let mut starts = vec![0usize];
    starts.extend(
        entries
            .iter()
            .filter(|e| e.is_barrier())
            .map(|e| e.index + 1),
    );
    let mut last_committed: Option<usize> = None;
    let mut call = |id: StateId, info: &Info, disk: &mut Disk, n: &mut usize| -> Result<bool> {
        *n += 1;
        check(&id, info, disk)
    };
    let mut count = 0usize;
    for (k, &start) in starts.iter().enumerate() {
        let end = entries
            .iter()
            .skip(start)
            .find(|e| e.is_barrier())
            .map(|e| e.index + 1)
            .unwrap_or(entries.len());
        let pending: Vec<&Entry> = entries[start.min(entries.len())..end]
            .iter()
            .filter(|e| e.is_write())
            .collect();
        let m = pending.len();
        let id = |kind| StateId {
            phase: phase.to_string(),
            interval: k,
            kind,
        };
        let mut info = Info {
            interval_start: start,
            last_entry: last_committed,
            pending: m,
            detail: String::new(),
        };
        if !call(id(Kind::Flush), &info, disk, &mut count)? {
            summary.states = count;
            return Ok(summary);
        }
        // prefixN
        let mark = disk.begin();
        for (i, e) in pending.iter().enumerate().take(m.saturating_sub(1)) {
            apply(disk, log, e)?;
            info.last_entry = Some(e.index);
            info.detail = String::new();
            if !call(id(Kind::Prefix(i + 1)), &info, disk, &mut count)? {
                summary.states = count;
                return Ok(summary);
            }
        }
        disk.rollback(mark)?;
        // omitJ
        if m >= 2 {
            let n = m.min(opts.omit_cap.max(1));
            for t in 0..n {
                let j = t * m / n;
                let mark = disk.begin();
                for (i, e) in pending.iter().enumerate() {
                    if i != j {
                        apply(disk, log, e)?;
                    }
                }
                info.last_entry = pending.last().map(|e| e.index);
                info.detail = format!("without entry {}", pending[j].index);
                let go = call(id(Kind::Omit(j)), &info, disk, &mut count)?;
                disk.rollback(mark)?;
                if !go {
                    summary.states = count;
                    return Ok(summary);
                }
            }
        }
        // randN
        if m >= 1 {
            let mut rng = Rng::new(phase_seed(opts.seed, phase, k));
            for r in 0..opts.random_per_interval {
                let mark = disk.begin();
                let keep = rng.below(101);
                let mut chosen: Vec<usize> = (0..m).filter(|_| rng.below(100) < keep).collect();
                for i in (1..chosen.len()).rev() {
                    let j = rng.below(i + 1);
                    chosen.swap(i, j);
                }
                for &i in &chosen {
                    apply(disk, log, pending[i])?;
                }
                let mut detail = format!("{} of {m} pending writes", chosen.len());
                let mut last = chosen.iter().map(|&i| pending[i].index).max();
                if rng.below(2) == 0 {
                    let w = pending[rng.below(m)];
                    let n = w.nr_sectors as usize;
                    let t = if n >= 2 { 1 + rng.below(n - 1) } else { 0 };
                    if t > 0 {
                        disk.write(w.sector, &log.data(w)[..t * SECTOR])?;
                        detail += &format!(", entry {} torn after {t} of {n} sectors", w.index);
                        last = last.max(Some(w.index));
                    }
                }
                if rng.below(4) == 0 {
                    let w = pending[rng.below(m)];
                    let s = w.sector + rng.below(w.nr_sectors as usize) as u64;
                    let mut junk = vec![0u8; SECTOR];
                    for c in junk.chunks_exact_mut(8) {
                        c.copy_from_slice(&rng.next_u64().to_le_bytes());
                    }
                    disk.write(s, &junk)?;
                    detail += &format!(", garbage in sector {s} (entry {})", w.index);
                    last = last.max(Some(w.index));
                }
                info.last_entry = last.or(last_committed);
                info.detail = detail;
                let go = call(id(Kind::Random(r)), &info, disk, &mut count)?;
                disk.rollback(mark)?;
                if !go {
                    summary.states = count;
                    return Ok(summary);
                }
            }
        }
        // commit the interval
        for e in &pending {
            apply(disk, log, e)?;
        }
        if let Some(e) = pending.last() {
            last_committed = Some(e.index);
        }
        if k + 1 == starts.len() && end == entries.len() && m > 0 {
            let info = Info {
                interval_start: start,
                last_entry: last_committed,
                pending: 0,
                detail: String::new(),
            };
            let final_id = id(Kind::Final);
            if !call(final_id, &info, disk, &mut count)? {
                break;
            }
        }
    }
    summary.states = count;
    Ok(summary)
}
