//! The floor: plain TCP between two processes of the benchmark, one round trip at a time
//! and with 256 messages in flight, so that every figure is quoted as a ratio of it.
//!
//! The parent echoes, a child measures; both use blocking sockets and no runtime, which
//! is as close to what the machine allows as a user-space program gets.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::child::{self, Child};
use crate::stats::{ChildReport, Floor, FloorKind, Record, Samples};

/// Bytes per message, like the 32-byte items of the queue scenarios.
pub const MESSAGE: usize = 32;

/// Measures both floors, and round trips 2 ms apart (what a put meets in the idle
/// scenario: a sleeping process on the other end); returns the floors and their records.
pub async fn measure(round_trips: u64, streamed: u64, apart: u64) -> Result<(Floor, Vec<Record>)> {
    let rtt = run(round_trips, 1, 0).await?;
    let stream = run(streamed, 256, 0).await?;
    let idle = run(apart, 1, 2000).await?;
    let mut rtt_lat = rtt.latencies.clone();
    let floor = Floor {
        rtt_per_s: rtt.items as f64 / rtt.secs,
        rtt_p50_us: rtt_lat.percentile_us(50.0).unwrap_or(0.0),
        stream_per_s: stream.items as f64 / stream.secs,
    };
    let records = vec![
        Record::throughput(
            "floor: TCP ping-pong, 1 in flight",
            1,
            rtt,
            "a round trip",
            FloorKind::RoundTrip,
            floor,
        ),
        Record::throughput(
            "floor: TCP, 256 in flight",
            1,
            stream,
            "a message's round trip",
            FloorKind::Stream,
            floor,
        ),
        Record {
            items_per_s: None,
            ratio_to_floor: None,
            ..Record::throughput(
                "floor: TCP ping-pong, 2 ms apart",
                1,
                idle,
                "a round trip to a sleeping process",
                FloorKind::None,
                floor,
            )
        },
    ];
    Ok((floor, records))
}

async fn run(count: u64, in_flight: u64, gap_us: u64) -> Result<ChildReport> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?.to_string();
    let echo = std::thread::spawn(move || -> Result<()> {
        let (mut stream, _) = listener.accept()?;
        stream.set_nodelay(true)?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = stream.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            stream.write_all(&buf[..n])?;
        }
    });
    let child = Child::spawn(&[
        "floor-client".into(),
        "--addr".into(),
        addr,
        "--count".into(),
        count.to_string(),
        "--in-flight".into(),
        in_flight.to_string(),
        "--gap-us".into(),
        gap_us.to_string(),
    ])?;
    let report = child.report(Duration::from_secs(300)).await?;
    echo.join()
        .map_err(|_| anyhow::anyhow!("echo thread panicked"))??;
    Ok(report)
}

/// Child side: sends `count` messages, `in_flight` at a time (`gap` apart when one at a
/// time), each stamped with its send time so that its round trip is known when it comes
/// back.
pub fn client(addr: &str, count: u64, in_flight: u64, gap: Duration) -> Result<()> {
    let mut stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let start = Instant::now();
    let mut latencies = Samples::default();
    let mut out = Vec::with_capacity(MESSAGE * in_flight as usize);
    let stamp = |out: &mut Vec<u8>, n: u64| {
        let now = start.elapsed().as_nanos() as u64;
        for _ in 0..n {
            out.extend_from_slice(&now.to_le_bytes());
            out.extend_from_slice(&[0u8; MESSAGE - 8]);
        }
    };
    let first = in_flight.min(count);
    stamp(&mut out, first);
    stream.write_all(&out)?;
    let (mut sent, mut received) = (first, 0u64);
    let mut buf = vec![0u8; 64 * 1024];
    let mut have = 0usize;
    while received < count {
        let n = stream.read(&mut buf[have..])?;
        anyhow::ensure!(n > 0, "echo closed early");
        have += n;
        let whole = have / MESSAGE;
        let now = start.elapsed().as_nanos() as u64;
        for m in buf[..whole * MESSAGE].chunks_exact(MESSAGE) {
            let sent_at = u64::from_le_bytes(m[..8].try_into().expect("8 bytes"));
            latencies.push(Duration::from_nanos(now.saturating_sub(sent_at)));
        }
        buf.copy_within(whole * MESSAGE..have, 0);
        have -= whole * MESSAGE;
        received += whole as u64;
        let more = (whole as u64).min(count - sent);
        if more > 0 && !gap.is_zero() {
            std::thread::sleep(gap);
        }
        if more > 0 {
            out.clear();
            stamp(&mut out, more);
            stream.write_all(&out)?;
            sent += more;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    child::report(&ChildReport {
        items: received,
        secs,
        latencies,
    })
}
