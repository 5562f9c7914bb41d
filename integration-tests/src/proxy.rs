//! A TCP proxy that fails on command, put between a client under test and a shared server
//! (RabbitMQ) so one test can simulate an outage or a lost reply without touching the
//! server the other tests use.
//!
//! Two faults: [`FaultProxy::cut`] drops every connection abruptly and refuses new ones until
//! [`FaultProxy::restore`]; [`FaultProxy::hold_downstream`] keeps connections open and
//! forwards the client's bytes, but holds the server's bytes back until
//! [`FaultProxy::release_downstream`]. A held-back publisher confirm is the classic use: the
//! message reaches the broker, the client never hears that it did.
//!
//! The proxy never panics: a connection whose socket fails is closed, and a test sees that
//! as the client would see a network failure.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy is doing to its traffic. Connections watch it and react at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Faults {
    /// Bumped by every cut: a connection let through before the bump is closed.
    cuts: u64,
    /// New connections are accepted and closed at once.
    refusing: bool,
    /// Server-to-client bytes are held back.
    holding_downstream: bool,
}

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicUsize,
    refused: AtomicUsize,
}

/// A proxy on `127.0.0.1:<port 0>` forwarding to one upstream address. Dropping it stops
/// listening and closes every connection.
#[derive(Debug)]
pub struct FaultProxy {
    address: SocketAddr,
    upstream: SocketAddr,
    faults: watch::Sender<Faults>,
    live: watch::Sender<usize>,
    counters: Arc<Counters>,
    acceptor: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free port of 127.0.0.1 and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap_or_else(|error| panic!("the fault proxy cannot listen on 127.0.0.1: {error}"));
        let address = listener
            .local_addr()
            .unwrap_or_else(|error| panic!("the fault proxy's listening address: {error}"));
        let (faults, _) = watch::channel(Faults::default());
        let (live, _) = watch::channel(0_usize);
        let counters = Arc::new(Counters::default());
        let acceptor = tokio::spawn(accept_connections(
            listener,
            upstream,
            faults.subscribe(),
            live.clone(),
            Arc::clone(&counters),
        ));
        FaultProxy {
            address,
            upstream,
            faults,
            live,
            counters,
            acceptor,
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.address
    }

    /// Where the proxy forwards to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// `base` (an `amqp://` URL) with its host and port replaced by the proxy's; user,
    /// password, virtual host and query stay.
    pub fn amqp_url(&self, base: &str) -> String {
        crate::amqp::with_address(base, self.address)
    }

    /// Drops every live connection at once, both directions, with a reset rather than an
    /// orderly close, and refuses new connections (accepted, then reset at once, so a
    /// client fails fast instead of timing out) until [`FaultProxy::restore`]. Returns
    /// when no connection is left.
    pub async fn cut(&self) {
        self.faults.send_modify(|faults| {
            faults.cuts += 1;
            faults.refusing = true;
        });
        let mut live = self.live.subscribe();
        // The sender is `self.live`, alive as long as `self`: this cannot fail.
        let _ = live.wait_for(|connections| *connections == 0).await;
    }

    /// Lets new connections through again after [`FaultProxy::cut`].
    pub fn restore(&self) {
        self.faults.send_modify(|faults| faults.refusing = false);
    }

    /// From now on, holds back every byte the server sends (connections stay open and the
    /// client's bytes still reach the server) until [`FaultProxy::release_downstream`].
    /// Bytes already on their way to the client when this is called still arrive.
    pub fn hold_downstream(&self) {
        self.faults.send_modify(|faults| faults.holding_downstream = true);
    }

    /// Delivers what was held back, in order, and forwards the server's bytes again.
    pub fn release_downstream(&self) {
        self.faults.send_modify(|faults| faults.holding_downstream = false);
    }

    /// Connections open now (through the proxy, to the upstream).
    pub fn connections(&self) -> usize {
        *self.live.borrow()
    }

    /// Connections let through since the start; refused ones are not counted.
    pub fn accepted(&self) -> usize {
        self.counters.accepted.load(Ordering::SeqCst)
    }

    /// Connections refused during cuts since the start.
    pub fn refused(&self) -> usize {
        self.counters.refused.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // The connections end by themselves when `faults` is dropped with the proxy.
        self.acceptor.abort();
    }
}

/// Counts a connection as live from before it is checked against the faults until its task
/// ends, however it ends: so [`FaultProxy::cut`] cannot miss one being accepted.
#[derive(Debug)]
struct LiveConnection(watch::Sender<usize>);

impl LiveConnection {
    fn open(live: &watch::Sender<usize>) -> LiveConnection {
        live.send_modify(|connections| *connections += 1);
        LiveConnection(live.clone())
    }
}

impl Drop for LiveConnection {
    fn drop(&mut self) {
        self.0.send_modify(|connections| *connections -= 1);
    }
}

async fn accept_connections(
    listener: TcpListener,
    upstream: SocketAddr,
    mut faults: watch::Receiver<Faults>,
    live: watch::Sender<usize>,
    counters: Arc<Counters>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            changed = faults.changed() => {
                if changed.is_err() {
                    return; // the proxy is gone
                }
                continue;
            }
        };
        let client = match accepted {
            Ok((client, _)) => client,
            Err(_) => {
                // Out of file descriptors and the like: give the system a moment rather
                // than spinning on the same error.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let connection = LiveConnection::open(&live);
        let current = *faults.borrow();
        if current.refusing {
            counters.refused.fetch_add(1, Ordering::SeqCst);
            let _ = client.set_zero_linger();
            drop(client);
            drop(connection);
            continue;
        }
        counters.accepted.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(forward_connection(
            client,
            upstream,
            current.cuts,
            faults.clone(),
            connection,
        ));
    }
}

/// Forwards one client connection until either side closes, a socket fails, a cut comes
/// (`cuts` moves past `generation`) or the proxy is dropped.
async fn forward_connection(
    mut client: TcpStream,
    upstream: SocketAddr,
    generation: u64,
    faults: watch::Receiver<Faults>,
    _connection: LiveConnection,
) {
    let mut cut_watch = faults.clone();
    // Resolves on a cut, and on the proxy's drop (the sender is gone): both close abruptly.
    let cut = cut_watch.wait_for(|current| current.cuts != generation);
    tokio::pin!(cut);

    let connected = tokio::select! {
        _ = &mut cut => None,
        connected = TcpStream::connect(upstream) => connected.ok(),
    };
    let Some(mut server) = connected else {
        let _ = client.set_zero_linger();
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);

    let was_cut = {
        let (client_read, client_write) = client.split();
        let (server_read, server_write) = server.split();
        let both_directions = async {
            tokio::try_join!(
                forward_upstream(client_read, server_write),
                forward_downstream(server_read, client_write, faults),
            )
        };
        tokio::select! {
            _ = &mut cut => true,
            _ = both_directions => false,
        }
    };
    if was_cut {
        let _ = client.set_zero_linger();
        let _ = server.set_zero_linger();
    }
}

/// Client to server, unconditionally; the client's end of stream is passed on.
async fn forward_upstream(mut client: ReadHalf<'_>, mut server: WriteHalf<'_>) -> std::io::Result<()> {
    tokio::io::copy(&mut client, &mut server).await?;
    server.shutdown().await
}

/// Server to client, holding bytes back while the faults say so. The server's end of stream
/// is passed on once everything held has been delivered.
async fn forward_downstream(
    mut server: ReadHalf<'_>,
    mut client: WriteHalf<'_>,
    mut faults: watch::Receiver<Faults>,
) -> std::io::Result<()> {
    let mut held: Vec<u8> = Vec::new();
    let mut buffer = vec![0_u8; 16 * 1024];
    let mut server_open = true;
    loop {
        let holding = faults.borrow_and_update().holding_downstream;
        if !holding && !held.is_empty() {
            client.write_all(&held).await?;
            held.clear();
        }
        if !server_open && !holding {
            return client.shutdown().await;
        }
        tokio::select! {
            read = server.read(&mut buffer), if server_open => {
                let length = read?;
                if length == 0 {
                    server_open = false;
                    continue;
                }
                // Appended first, so a release that came while reading still keeps order.
                held.extend_from_slice(&buffer[..length]);
                if !faults.borrow().holding_downstream {
                    client.write_all(&held).await?;
                    held.clear();
                }
            }
            changed = faults.changed() => {
                if changed.is_err() {
                    return Ok(()); // the proxy is gone
                }
            }
        }
    }
}
