//! A TCP forwarder the tests put between a process and a server: to cut the connection (every
//! connection dropped, new ones refused) and restore it, or to reach a server on this host's
//! loopback from a host of its own.

use tokio::net::{TcpListener, TcpStream};

/// Forwards every connection made to `port` to its target while not cut.
pub struct Forwarder {
    pub port: u16,
    cut: tokio::sync::watch::Sender<bool>,
}

impl Forwarder {
    /// Listens on `listen` (an address with port 0 for any) on `runtime`, forwarding to
    /// `target` (`host:port`).
    pub fn start(runtime: &tokio::runtime::Runtime, listen: &str, target: String) -> Self {
        let listener = runtime.block_on(TcpListener::bind(listen)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, watch) = tokio::sync::watch::channel(false);
        runtime.spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                if *watch.borrow() {
                    continue; // dropped: refused while cut
                }
                let target = target.clone();
                let mut watch = watch.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = watch.wait_for(|&cut| cut) => {}
                    }
                });
            }
        });
        Self { port, cut }
    }

    /// Cuts every connection and refuses new ones (`true`), or lets them through again.
    pub fn set_cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

/// `url` (a database URL) with its host and port replaced by `host:port`, and the host and
/// port it had.
pub fn through(url: &str, host: &str, port: u16) -> (String, String) {
    let (scheme, rest) = url.split_once("://").unwrap();
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (credentials, target) = match authority.rfind('@') {
        Some(at) => (&authority[..=at], &authority[at + 1..]),
        None => ("", authority),
    };
    let target = if target.contains(':') {
        target.to_owned()
    } else {
        format!("{target}:5432")
    };
    (
        format!("{scheme}://{credentials}{host}:{port}{tail}"),
        target,
    )
}
