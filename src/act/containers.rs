//! Stopping containers: the way to free a port a container publishes.
//! Behind a trait, so the actions can be tested without a daemon; the real
//! one talks to the Docker Engine API ([`crate::docker`]).

use std::time::Duration;

/// Stops containers.
pub trait Containers {
    /// Stops container `id`, giving it `grace` before the daemon kills it;
    /// returns once it has stopped, or why it could not.
    fn stop(&self, id: &str, grace: Duration) -> Result<(), String>;
}

/// The Docker Engine API of `$DOCKER_HOST` (or the default socket).
#[derive(Debug, Default, Clone, Copy)]
pub struct DockerApi;

impl Containers for DockerApi {
    fn stop(&self, id: &str, grace: Duration) -> Result<(), String> {
        crate::docker::Client::from_env()
            .and_then(|client| client.stop(id, grace))
            .map_err(|e| e.to_string())
    }
}
