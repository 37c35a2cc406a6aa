//! Keeping the inventory current: a full read at start, again after each
//! relevant engine event (debounced), and every `resync` as a safety net. If
//! the engine goes away the last inventory is kept with `docker_up = false`
//! and the watcher reconnects with backoff.
use std::{sync::Arc, time::Duration};

use bollard::{query_parameters::EventsOptions, Docker};
use futures_util::StreamExt;
use tokio::sync::watch;

use super::{connect, fetch, Inventory};

pub type InventoryRx = watch::Receiver<Arc<Inventory>>;

const DEBOUNCE: Duration = Duration::from_millis(300);
const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Starts the watcher; the receiver always holds the latest inventory.
pub fn spawn_watcher(
    host: Option<String>,
    resync: Duration,
    mut stop: watch::Receiver<bool>,
) -> (InventoryRx, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(Arc::new(Inventory::default()));
    let task = tokio::spawn(async move {
        let mut backoff = MIN_BACKOFF;
        let mut reported = false;
        loop {
            let outcome = tokio::select! {
                r = follow(&tx, host.as_deref(), resync) => r,
                _ = stop.changed() => return,
            };
            let was_up = tx.borrow().docker_up;
            mark_down(&tx);
            if was_up {
                backoff = MIN_BACKOFF;
                reported = false;
            }
            // One line per outage, not one per retry.
            if let Err(e) = outcome {
                if !reported {
                    log::warn!(
                        "{e:#}; flows are labelled `unknown` until it is back, counting goes on"
                    );
                    reported = true;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    });
    (rx, task)
}

fn mark_down(tx: &watch::Sender<Arc<Inventory>>) {
    let cur = tx.borrow().clone();
    if cur.docker_up {
        let mut down = (*cur).clone();
        down.docker_up = false;
        let _ = tx.send(Arc::new(down));
    }
}

async fn sync(tx: &watch::Sender<Arc<Inventory>>, docker: &Docker) -> anyhow::Result<()> {
    let raw = fetch(docker).await?;
    let inv = Inventory::from_raw(&raw, crate::time::unix_now());
    let first = !tx.borrow().docker_up;
    if first {
        log::info!(
            "docker: {} overlay networks, {} endpoints{}",
            inv.networks.len(),
            inv.endpoints.len(),
            match &inv.swarm {
                Some(s) if s.manager => " (manager)",
                Some(_) => " (worker: manager-only details unavailable)",
                None => " (not in swarm mode)",
            }
        );
    }
    let _ = tx.send(Arc::new(inv));
    Ok(())
}

/// Connects, syncs, then follows events until the stream or engine fails.
async fn follow(
    tx: &watch::Sender<Arc<Inventory>>,
    host: Option<&str>,
    resync: Duration,
) -> anyhow::Result<()> {
    let docker = connect(host).await?;
    sync(tx, &docker).await?;
    let filters = std::collections::HashMap::from([(
        "type".to_owned(),
        ["network", "service", "container", "node"]
            .map(String::from)
            .to_vec(),
    )]);
    let mut events = docker.events(Some(EventsOptions {
        filters: Some(filters),
        ..EventsOptions::default()
    }));
    let mut tick = tokio::time::interval(resync);
    tick.tick().await;
    loop {
        tokio::select! {
            ev = events.next() => match ev {
                Some(Ok(_)) => {
                    // Events come in bursts (a service update is dozens):
                    // wait for the burst to end, then read once.
                    let deadline = tokio::time::sleep(DEBOUNCE);
                    tokio::pin!(deadline);
                    loop {
                        tokio::select! {
                            more = events.next() => match more {
                                Some(Ok(_)) => continue,
                                Some(Err(e)) => return Err(e.into()),
                                None => anyhow::bail!("the Docker event stream ended"),
                            },
                            _ = &mut deadline => break,
                        }
                    }
                    sync(tx, &docker).await?;
                }
                Some(Err(e)) => return Err(anyhow::Error::from(e).context("Docker event stream")),
                None => anyhow::bail!("the Docker event stream ended"),
            },
            _ = tick.tick() => sync(tx, &docker).await?,
        }
    }
}
