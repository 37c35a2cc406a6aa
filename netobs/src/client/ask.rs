//! Many agents asked at once, each answer kept with its node: the cluster
//! view's, and an agent's asking its peers.
use super::{fetch, Agent, Failure};
use crate::api::{Answer, ClusterView, Endpoint, NodeAnswer};

/// A node's agent to ask.
#[derive(Debug, Clone)]
pub struct Member {
    pub node: String,
    pub agent: Agent,
}

/// Document `E` from every member at once.
pub fn ask<E: Endpoint>(members: &[Member]) -> ClusterView<E::Body>
where
    E::Body: Send,
{
    ask_each(members, fetch::<E>)
}

/// `read` of every member's agent at once, each in its own thread (each
/// bounded by the agent's timeout).
pub fn ask_each<T: Send>(
    members: &[Member],
    read: impl Fn(&Agent) -> Result<T, Failure> + Sync,
) -> ClusterView<T> {
    let read = &read;
    let nodes = std::thread::scope(|s| {
        let asks: Vec<_> = members
            .iter()
            .map(|m| s.spawn(move || read(&m.agent)))
            .collect();
        members
            .iter()
            .zip(asks)
            .map(|(m, ask)| {
                let answer = match ask.join() {
                    Ok(Ok(data)) => Answer::Ok { data },
                    Ok(Err(f)) => failure(f),
                    Err(_) => Answer::Failed {
                        error: format!("asking the agent at {} failed", m.agent),
                    },
                };
                NodeAnswer {
                    node: m.node.clone(),
                    agent: m.agent.addr.to_string(),
                    answer,
                }
            })
            .collect()
    });
    ClusterView { nodes }
}

fn failure<T>(f: Failure) -> Answer<T> {
    match f {
        Failure::Down(error) => Answer::Down { error },
        Failure::Slow(error) => Answer::Slow { error },
        Failure::Refused(error) => Answer::Refused { error },
        Failure::Incompatible(error) => Answer::Incompatible { error },
        Failure::Failed(error) => Answer::Failed { error },
    }
}
