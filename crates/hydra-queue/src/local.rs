//! In-process clients: a consumer or feed living in the serving process talks to its server
//! over an in-memory stream, with the same protocol and handshake but no socket and no TLS.

use crate::client::Client;
use crate::error::Result;
use crate::server::Server;

/// Buffer of each direction of an in-process connection.
const LOCAL_BUFFER: usize = 256 * 1024;

impl Server {
    /// Connects a client named `name` to this server through memory: for workers that run
    /// in the serving process itself (they need no certificate, even when remote clients
    /// must present one). The server's token, if any, is used in the handshake as usual.
    ///
    /// ```
    /// # async fn demo() -> hydra_queue::Result<()> {
    /// use hydra_queue::{Server, ServerOptions, SourceOptions};
    /// let server = Server::bind("127.0.0.1:0", ServerOptions::default()).await?;
    /// let tasks = server.source::<String>("tasks", SourceOptions::default())?;
    /// tasks.put(&"a".to_string()).await?;
    /// let client = server.connect_local("local").await?;
    /// let consumer = client.consumer::<String>("tasks").await?;
    /// assert_eq!(consumer.get(None).await?.item, "a");
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    pub async fn connect_local(&self, name: &str) -> Result<Client> {
        let (server_side, client_side) = tokio::io::duplex(LOCAL_BUFFER);
        self.attach(server_side)?;
        Client::over(client_side, &self.client_settings(name)).await
    }
}
