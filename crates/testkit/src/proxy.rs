//! [`Proxy`]: a Service on loopback. A Kubernetes Service forwards to
//! whichever pod its selector picks; this forwards to whichever server the
//! test points it at, so that code following a Service (a standby's
//! `primary_conninfo`) follows a failover here as it would in a cluster.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Forwards connections on `127.0.0.1:<port>` to its current target; new
/// connections go to a new target, open ones are cut when it changes, as
/// they are when a Service's pod goes away.
pub struct Proxy {
    host: String,
    port: u16,
    target: Arc<Mutex<(SocketAddr, u64)>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `target`.
    pub async fn start(target: SocketAddr) -> Result<Proxy> {
        Proxy::start_at("127.0.0.1:0".parse()?, target).await
    }

    /// Listens on `listen` (another loopback address, such as
    /// `127.0.0.2:<port>`, gives two Services the same port, as in a
    /// cluster) and forwards to `target`.
    pub async fn start_at(listen: SocketAddr, target: SocketAddr) -> Result<Proxy> {
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding the proxy to {listen}"))?;
        let host = listen.ip().to_string();
        let port = listener.local_addr()?.port();
        let target = Arc::new(Mutex::new((target, 0)));
        let shared = target.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let (address, epoch) = *lock(&shared);
                let shared = shared.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(address).await else {
                        return;
                    };
                    let copy = tokio::io::copy_bidirectional(&mut inbound, &mut outbound);
                    let moved = async {
                        while lock(&shared).1 == epoch {
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        }
                    };
                    tokio::select! {
                        _ = copy => {}
                        () = moved => {}
                    }
                });
            }
        });
        Ok(Proxy {
            host,
            port,
            target,
            accept,
        })
    }

    /// The loopback address it listens on.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Sends new connections to `target` and cuts the open ones.
    pub fn point_at(&self, target: SocketAddr) {
        let mut current = lock(&self.target);
        *current = (target, current.1 + 1);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
