//! The well-behaved side of every hostile test: a server with numbered work items and a
//! result sink, and a worker that does every item while the hostile client misbehaves.
//! At the end every item must be done exactly once and its result received exactly once.

use std::net::SocketAddr;
use std::time::Duration;

use hydra_queue::{
    ClientSettings, ClientTls, Heartbeat, Server, ServerOptions, SinkOptions, SinkQueue,
    SourceOptions, SourceQueue,
};
use tokio::task::JoinHandle;

use crate::raw::{bounded, BOUND};

/// Short limits so that the tests of them end quickly; the defaults are generous.
pub fn short_options() -> ServerOptions {
    ServerOptions {
        handshake_timeout: Duration::from_millis(500),
        lease_timeout: Duration::from_secs(3),
        ..ServerOptions::default()
    }
}

pub struct Scenario {
    pub server: Server,
    pub tasks: SourceQueue<u32>,
    results: SinkQueue<(u32, u32)>,
    client_tls: Option<ClientTls>,
    next: u32,
    workers: Vec<JoinHandle<hydra_queue::Result<u32>>>,
}

impl Scenario {
    /// A server with `options`, a source queue "tasks" holding `first` items and a sink
    /// queue "results".
    pub async fn start(options: ServerOptions, client_tls: Option<ClientTls>, first: u32) -> Self {
        let server = Server::bind("127.0.0.1:0", options)
            .await
            .expect("bind server");
        let tasks = server
            .source::<u32>("tasks", SourceOptions::default())
            .expect("create tasks");
        let results = server
            .sink::<(u32, u32)>("results", SinkOptions::default())
            .expect("create results");
        let mut s = Scenario {
            server,
            tasks,
            results,
            client_tls,
            next: 0,
            workers: Vec::new(),
        };
        s.put(first).await;
        s
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Settings of a well-behaved client.
    pub fn settings(&self, name: &str) -> ClientSettings {
        let mut s = self.server.client_settings(name).unique();
        s.tls = self.client_tls.clone();
        // Beat often: a test server's lease timeout is short and this machine is noisy.
        s.heartbeat = Heartbeat::Every(Duration::from_millis(250));
        s.connect_timeout = BOUND;
        s
    }

    pub async fn put(&mut self, n: u32) {
        for _ in 0..n {
            self.tasks.put(&self.next).await.expect("put item");
            self.next += 1;
        }
    }

    /// Starts a worker and returns once it is connected, with its consumer and feed open.
    pub async fn start_worker(&mut self) {
        let settings = self.settings("good");
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        self.workers.push(tokio::spawn(async move {
            let client = settings.connect().await?;
            let consumer = client.consumer::<u32>("tasks").await?;
            let feed = client.feed::<(u32, u32)>("results", client.name()).await?;
            let _ = ready_tx.send(());
            let mut n = 0;
            loop {
                match consumer.get(None).await {
                    Ok(d) => {
                        consumer.task_started(d.id).await?;
                        feed.put(&(d.item, d.attempt)).await?;
                        consumer.task_done(d.id).await?;
                        n += 1;
                    }
                    Err(e) if e.is_end_of_stream() => break,
                    Err(e) => return Err(e),
                }
            }
            feed.close().await?;
            Ok(n)
        }));
        if bounded("worker start", ready_rx).await.is_err() {
            let worker = self.workers.pop().expect("just pushed");
            panic!("worker failed to start: {:?}", worker.await);
        }
    }

    /// Waits until at least `n` items are done.
    pub async fn wait_done(&self, n: u64) {
        bounded(&format!("{n} items done"), async {
            let mut changes = self.tasks.subscribe();
            while self.tasks.counts().done < n {
                changes.changed().await;
            }
        })
        .await
    }

    /// Puts `more` items, closes the queue, waits for the workers, and checks that every
    /// item was done once and its result received once. Returns each item's attempt.
    pub async fn finish(mut self, more: u32) -> Vec<u32> {
        self.put(more).await;
        self.tasks.close();
        let total = self.next;
        let report = self
            .tasks
            .join(Some(BOUND))
            .await
            .expect("every item finishes");
        assert_eq!(
            (report.total, report.done, report.failed, report.dead),
            (u64::from(total), u64::from(total), 0, 0),
            "join report {report:?}"
        );
        let mut processed = 0;
        for w in self.workers.drain(..) {
            processed += bounded("worker end", w)
                .await
                .expect("worker task")
                .expect("the well-behaved worker meets no error");
        }
        assert_eq!(processed, total, "worker results");
        let sink = self.results.join(Some(BOUND)).await.expect("sink join");
        assert_eq!(sink.received, u64::from(total));
        let mut attempts = vec![0u32; total as usize];
        loop {
            match self.results.get(Some(Duration::ZERO)).await {
                Ok((item, attempt)) => {
                    let slot = &mut attempts[item as usize];
                    assert_eq!(*slot, 0, "item {item} completed twice");
                    *slot = attempt;
                }
                Err(e) if e.is_end_of_stream() => break,
                Err(e) => panic!("sink get: {e}"),
            }
        }
        let missing: Vec<usize> = (0..attempts.len()).filter(|&i| attempts[i] == 0).collect();
        assert!(missing.is_empty(), "items never completed: {missing:?}");
        attempts
    }
}
