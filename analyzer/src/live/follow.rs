//! Incremental snapshots: the watcher's state for one traced log, kept from
//! one snapshot to the next, so that each costs what happened since the
//! previous one, not the log so far.
//!
//! A [`Follower`] holds a [`Tail`] (how far each stream of the live log was
//! read), the catalog (stacks, modules, the frozen copies recorded) and the
//! replay (the live heap and mappings) as of the previous snapshot's time.
//! [`Follower::take`] reads the records written since, up to the new
//! snapshot's time `t` (later ones wait for the next snapshot), applies
//! them, classifies the live blocks by scanning the frozen copy, and writes
//! the snapshot from the state ([`crate::live::compact`]) instead of copying
//! the log. Logs this does not cover are snapshotted the old way
//! ([`crate::live::snapshot::take`]): a fork child's (its replay starts from
//! its parent's blocks), a sampled one (its blocks are estimates), a packed
//! one.

use std::path::Path;

use crate::analysis::catalog::{Catalog, Running};
use crate::analysis::reach;
use crate::analysis::replay::{Config, Replay};
use crate::error::{Error, Result};
use crate::log::Log;
use crate::log::tail::Tail;

use super::snapshot::{Taken, classify_into};

/// The retained state of one traced log (see the module docs).
pub struct Follower {
    tail: Tail,
    catalog: Catalog,
    replay: Replay,
    /// Time of the last snapshot taken.
    until: u64,
}

impl Follower {
    /// A follower for the log whose header is `h`; `None` when its snapshots
    /// are not taken incrementally (see the module docs).
    pub fn new(h: &memtrace_format::Header<'_>) -> Option<Follower> {
        if h.forked_from != 0 || h.sample_interval != 0 {
            return None;
        }
        let cfg = Config {
            until: 0,
            ..Config::of(h)
        };
        Some(Follower {
            tail: Tail::default(),
            catalog: Catalog::default(),
            replay: Replay::new(cfg),
            until: 0,
        })
    }

    /// Makes the snapshot for the frozen copy `frozen` of the process
    /// writing the log at `path`, into `out`, as
    /// [`crate::live::snapshot::take`] does. `Ok(None)`: the log does not
    /// record the copy (yet).
    pub fn take(
        &mut self,
        path: &Path,
        frozen: u32,
        out: &Path,
        pack: bool,
        heur: reach::Heuristics,
    ) -> Result<Option<Taken>> {
        let log = Log::open(path)?;
        let header = log.header()?;
        let reserved = header.reserved_end;
        let bytes = log.bytes();
        let bad = |err| Error::Chunk {
            path: path.to_owned(),
            offset: 0,
            err,
        };
        let Some(running) = self.running(bytes, reserved, frozen).map_err(bad)? else {
            return Ok(None);
        };
        let Some(copy) = Running::from_values(&running) else {
            return Ok(None);
        };
        let t = copy.time;
        // A copy recorded before the last snapshot's time has its events
        // applied already, past its own time: it cannot be taken from here.
        if t < self.until {
            return super::snapshot::take(path, frozen, out, pack, heur);
        }
        let events = self.tail.read(bytes, reserved, t).map_err(bad)?;
        for ev in &events {
            self.catalog.observe(ev, &log, &self.tail.index)?;
            self.replay.apply(ev);
        }
        self.until = t;
        let tmp = out.with_extension("tmp");
        let io = |e: std::io::Error, p: &Path| Error::Io {
            path: p.to_owned(),
            source: e,
        };
        crate::live::compact::write(
            &tmp,
            &bytes[..memtrace_format::HEADER_SIZE],
            t,
            &running,
            &self.catalog,
            &self.replay,
        )
        .map_err(|e| io(e, &tmp))?;
        let mut live: Vec<(u64, crate::analysis::replay::Block)> = self.replay.live().collect();
        live.sort_unstable_by_key(|e| e.0);
        let mut made = classify_into(&tmp, &copy, &live, heur);
        if pack
            && made.is_ok()
            && let Err(e) = crate::pack::pack_file(&tmp, &tmp)
        {
            made = Err(e);
        }
        match made {
            Ok(taken) => {
                std::fs::rename(&tmp, out).map_err(|e| io(e, out))?;
                Ok(Some(taken))
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// The values of the `KIND_SNAPSHOT_RUNNING` record of `frozen`, among
    /// the records not read yet (whatever their time).
    fn running(
        &mut self,
        bytes: &[u8],
        reserved: u64,
        frozen: u32,
    ) -> std::result::Result<Option<Vec<u64>>, memtrace_format::DecodeError> {
        for ev in self.tail.peek(bytes, reserved)? {
            if let memtrace_format::Record::Kernel { kind, values, .. } = &ev.record
                && *kind == memtrace_format::kernel::KIND_SNAPSHOT_RUNNING
            {
                let v: Vec<u64> = values.clone().collect::<std::result::Result<_, _>>()?;
                if v.len() >= 3 && v[0] == frozen as u64 {
                    return Ok(Some(v));
                }
            }
        }
        Ok(None)
    }
}
