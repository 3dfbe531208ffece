//! A small loopback TCP proxy that can become a black hole: it stops forwarding in both
//! directions (or only towards the client) while keeping both sockets open (no FIN, no
//! RST), like a pulled cable, and forwards again (what it held, then the rest) when
//! restored.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The proxy; dropping it closes every connection it carries.
pub struct BlackHoleProxy {
    addr: SocketAddr,
    /// Client to server.
    up: watch::Sender<bool>,
    /// Server to client.
    down: watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
}

impl BlackHoleProxy {
    /// Listens on 127.0.0.1 (port 0) and forwards each connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> BlackHoleProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (up, up_rx) = watch::channel(true);
        let (down, down_rx) = watch::channel(true);
        let accept = tokio::spawn(async move {
            let mut pumps = JoinSet::new();
            loop {
                let Ok((down, _)) = listener.accept().await else {
                    return;
                };
                let Ok(up) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let _ = down.set_nodelay(true);
                let _ = up.set_nodelay(true);
                let (down_r, down_w) = down.into_split();
                let (up_r, up_w) = up.into_split();
                pumps.spawn(pump(down_r, up_w, up_rx.clone()));
                pumps.spawn(pump(up_r, down_w, down_rx.clone()));
            }
        });
        BlackHoleProxy {
            addr,
            up,
            down,
            accept,
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops forwarding both ways; the sockets stay open.
    pub fn cut(&self) {
        self.up.send_replace(false);
        self.down.send_replace(false);
    }

    /// Stops forwarding from the server to the client only: requests arrive, answers
    /// do not.
    pub fn cut_answers(&self) {
        self.down.send_replace(false);
    }

    /// Forwards again, both ways.
    pub fn restore(&self) {
        self.up.send_replace(true);
        self.down.send_replace(true);
    }
}

impl Drop for BlackHoleProxy {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every pump.
        self.accept.abort();
    }
}

/// Copies `from` to `to` while the proxy is open. While it is cut, nothing is read, so
/// the bytes pile up in the kernel's buffers and the peer sees silence. When the far
/// side's writes fail (it closed), keeps reading and discarding so that the near side is
/// not reset before it has read what was forwarded to it.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut open: watch::Receiver<bool>) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut far_gone = false;
    loop {
        if !until(&mut open, true).await {
            return;
        }
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => {
                    let _ = to.shutdown().await;
                    return;
                }
                Ok(n) => n,
            },
            _ = until(&mut open, false) => continue,
        };
        // Bytes read just as the cut came are held until forwarding resumes.
        if !until(&mut open, true).await {
            return;
        }
        if !far_gone && to.write_all(&buf[..n]).await.is_err() {
            far_gone = true;
        }
    }
}

/// Waits until the proxy's state is `open`; false if the proxy is gone.
async fn until(rx: &mut watch::Receiver<bool>, open: bool) -> bool {
    rx.wait_for(|o| *o == open).await.is_ok()
}
