//! A TCP proxy in front of a tenant server that the chaos suite can blackhole: while blackholed, it accepts
//! connections and forwards nothing, like a network path that silently drops packets.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct BlackholeProxy {
    pub port: u16,
    blackholed: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl BlackholeProxy {
    pub async fn start(upstream: &str) -> BlackholeProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let blackholed = Arc::new(AtomicBool::new(false));
        let upstream = upstream.to_owned();
        let flag = blackholed.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let flag = flag.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    if flag.load(Ordering::SeqCst) {
                        hold_silently(client).await;
                        return;
                    }
                    if let Ok(server) = TcpStream::connect(&upstream).await {
                        pump(client, server, flag).await;
                    }
                });
            }
        });
        BlackholeProxy {
            port,
            blackholed,
            task,
        }
    }

    pub fn blackhole(&self, on: bool) {
        self.blackholed.store(on, Ordering::SeqCst);
    }
}

impl Drop for BlackholeProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Holds a connection open and says nothing, for as long as the proxy lives.
async fn hold_silently(_client: TcpStream) {
    std::future::pending::<()>().await;
}

/// Copies both ways until either side closes; once blackholed, bytes are read and dropped.
async fn pump(client: TcpStream, server: TcpStream, blackholed: Arc<AtomicBool>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let flag = blackholed.clone();
    let upstream = async move {
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            match client_read.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) if !flag.load(Ordering::SeqCst) => {
                    if server_write.write_all(&buffer[..n]).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
            }
        }
    };
    let downstream = async move {
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            match server_read.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) if !blackholed.load(Ordering::SeqCst) => {
                    if client_write.write_all(&buffer[..n]).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
            }
        }
    };
    tokio::select! {
        () = upstream => {}
        () = downstream => {}
    }
}
