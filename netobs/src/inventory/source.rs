//! Reading the engine with bollard.
use std::collections::HashMap;

use bollard::{
    query_parameters::{InspectNetworkOptions, ListContainersOptions, ListNetworksOptions},
    Docker, API_DEFAULT_VERSION,
};

use super::Raw;

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error(
        "cannot reach the Docker engine at {where_}: {source} (is dockerd running? \
         set --docker-host or DOCKER_HOST)"
    )]
    Connect {
        where_: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("the Docker engine failed `{call}`: {source}")]
    Api {
        call: &'static str,
        #[source]
        source: bollard::errors::Error,
    },
}

/// Connects to `host` (`unix:///path`, `/path`, `tcp://...`), or to
/// DOCKER_HOST / the default socket, and agrees on an API version (the
/// engines here speak 1.41).
pub async fn connect(host: Option<&str>) -> Result<Docker, DockerError> {
    let where_ = host
        .map(str::to_owned)
        .or_else(|| std::env::var("DOCKER_HOST").ok())
        .unwrap_or_else(|| "unix:///var/run/docker.sock".into());
    let err = |source| DockerError::Connect {
        where_: where_.clone(),
        source,
    };
    let docker = match host {
        Some(h) if h.starts_with("tcp://") || h.starts_with("http://") => {
            Docker::connect_with_http(h, 10, API_DEFAULT_VERSION).map_err(err)?
        }
        Some(h) => Docker::connect_with_unix(h, 10, API_DEFAULT_VERSION).map_err(err)?,
        None => Docker::connect_with_local_defaults().map_err(err)?,
    };
    docker.negotiate_version().await.map_err(err)
}

fn api(call: &'static str) -> impl FnOnce(bollard::errors::Error) -> DockerError {
    move |source| DockerError::Api { call, source }
}

/// One full read. The manager-only calls are tried and left out when the
/// engine refuses them (a worker); nothing else may fail.
pub async fn fetch(docker: &Docker) -> Result<Raw, DockerError> {
    let info = docker.info().await.map_err(api("info"))?;
    let filters = HashMap::from([("driver".to_owned(), vec!["overlay".to_owned()])]);
    let list = docker
        .list_networks(Some(ListNetworksOptions {
            filters: Some(filters),
        }))
        .await
        .map_err(api("network ls"))?;
    let mut networks = Vec::with_capacity(list.len());
    for n in list {
        let Some(id) = n.id else { continue };
        let opts = InspectNetworkOptions {
            verbose: true,
            scope: None,
        };
        match docker.inspect_network(&id, Some(opts)).await {
            Ok(net) => networks.push(net),
            // Removed between the list and the inspect.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => return Err(api("network inspect")(e)),
        }
    }
    let containers = docker
        .list_containers(Some(ListContainersOptions::default()))
        .await
        .map_err(api("container ls"))?;
    let manager = info
        .swarm
        .as_ref()
        .and_then(|s| s.control_available)
        .unwrap_or(false);
    let (services, nodes, swarm, tasks) = if manager {
        (
            docker.list_services(None).await.ok(),
            docker.list_nodes(None).await.ok(),
            docker.inspect_swarm().await.ok(),
            docker.list_tasks(None).await.ok(),
        )
    } else {
        (None, None, None, None)
    };
    Ok(Raw {
        info,
        networks,
        containers,
        services,
        nodes,
        swarm,
        tasks,
    })
}
