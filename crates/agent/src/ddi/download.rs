//! The install request of the cycle: the artifact streamed from the server (resumable HTTP,
//! TUF-verified when configured) straight into [`Agent::install`].

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::driver::{download_url, Deployment};
use super::machine::Event;
use super::{DdiClient, DdiError};
use crate::agent::{Agent, AgentError};
use crate::install::{ChunkedStats, InstallError, InstallOptions};
use crate::source::{HttpReader, ResumePolicy};

/// Download the artifact straight into [`Agent::install`], with `proceeding` feedback at 25 %
/// steps of the download (best effort).
pub(super) fn install(
    agent: &mut Agent,
    client: &DdiClient,
    action_id: &str,
    deployment: Deployment,
) -> Result<Event, DdiError> {
    let artifact = deployment.artifact.unwrap_or_default();
    let url = download_url(&artifact).unwrap_or_default();
    let size = artifact["size"].as_u64().unwrap_or(0);
    let filename = artifact["filename"].as_str().unwrap_or("bundle.swu");
    let count = Arc::new(AtomicU64::new(0));
    let mut last_reported = 0u64;
    let mut progress = |_: u64, _: u64| {
        let Some(percent) = progress_step(count.load(Ordering::Relaxed), size, last_reported)
        else {
            return;
        };
        last_reported = percent;
        let _ = client.feedback(
            action_id,
            "proceeding",
            "none",
            Some((percent, 100)),
            &format!("installing {filename}: {percent}%"),
        );
    };
    let result = HttpReader::open(
        client.http.clone(),
        &url,
        client.headers(),
        ResumePolicy::default(),
    )
    .map_err(|e| e.to_string())
    .and_then(|reader| {
        crate::tuf::verified_stream(reader, deployment.tuf).map_err(|e| e.to_string())
    })
    .map(|reader| Counting {
        inner: reader,
        count: count.clone(),
    });
    let counting = match result {
        Ok(counting) => counting,
        Err(message) => return failed(agent, message),
    };
    let options = InstallOptions {
        action_id: Some(action_id.to_string()),
        progress: Some(&mut progress),
        packs: deployment.packs,
        ..Default::default()
    };
    match agent.install(counting, options) {
        Ok(report) => Ok(Event::Installed {
            target: report.target,
            summary: chunk_summary(&report.chunked),
        }),
        // Another agent process is installing or confirming: not this action's failure.
        Err(e @ InstallError::Agent(AgentError::Busy(_))) => Ok(Event::InstallBusy(e.to_string())),
        Err(e) => failed(agent, e.to_string()),
    }
}

/// A failed install, with the state file as the install left it (it records the failure).
fn failed(agent: &Agent, message: String) -> Result<Event, DdiError> {
    Ok(Event::InstallFailed {
        message,
        record: agent.load_state()?,
    })
}

/// The percentage to report after `count` of `size` bytes, if it is a new 25 % step below 100.
fn progress_step(count: u64, size: u64, last_reported: u64) -> Option<u64> {
    if size == 0 {
        return None;
    }
    let percent = count.saturating_mul(100) / size;
    (percent >= last_reported + 25 && percent < 100).then_some(percent)
}

/// Counts bytes pulled through it (for progress feedback).
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// What keel-chunked images cost, for the operator (empty without such images).
fn chunk_summary(c: &ChunkedStats) -> String {
    if c.image_bytes == 0 {
        return String::new();
    }
    format!(
        "; keel-chunked: fetched {} bytes in {} requests for {} image bytes ({} chunks from the booted slot, {} already in place, {} fetched)",
        c.fetched_bytes, c.requests, c.image_bytes, c.seed_chunks, c.kept_chunks, c.fetched_chunks
    )
}

#[cfg(test)]
mod tests {
    use super::progress_step;

    #[test]
    fn progress_goes_out_in_25_percent_steps_below_100() {
        assert_eq!(progress_step(10, 0, 0), None);
        assert_eq!(progress_step(24, 100, 0), None);
        assert_eq!(progress_step(30, 100, 0), Some(30));
        assert_eq!(progress_step(50, 100, 30), None);
        assert_eq!(progress_step(55, 100, 30), Some(55));
        assert_eq!(progress_step(100, 100, 55), None);
    }
}
