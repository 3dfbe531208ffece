//! Micro-benchmarks of the user-space work per item: the frame codec (a `Deliveries` frame
//! of 1,024 items, a one-item `Put`) and the source-queue state (put, lease, finish).
#![allow(missing_docs)]

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use hydra_queue::protocol::{decode, encode, Frame, Message, WireDelivery, DEFAULT_MAX_FRAME};
use hydra_queue::source::{GetResult, SourceState};
use hydra_queue::SourceOptions;

fn deliveries(n: usize) -> Frame {
    Frame {
        id: 7,
        message: Message::Deliveries {
            items: (0..n as u64)
                .map(|i| WireDelivery {
                    id: i,
                    attempt: 1,
                    payload: Bytes::from(vec![b'x'; 32]),
                })
                .collect(),
        },
    }
}

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    let frame = deliveries(1024);
    g.throughput(Throughput::Elements(1024));
    g.bench_function("encode Deliveries x1024", |b| {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        b.iter(|| {
            buf.clear();
            encode(black_box(&frame), &mut buf);
        })
    });
    let mut encoded = BytesMut::new();
    encode(&frame, &mut encoded);
    g.bench_function("decode Deliveries x1024", |b| {
        b.iter(|| {
            let mut buf = encoded.clone();
            black_box(decode(&mut buf, DEFAULT_MAX_FRAME).unwrap().unwrap())
        })
    });
    let put = Frame {
        id: 9,
        message: Message::Put {
            handle: 1,
            timeout_ms: 0,
            items: vec![Bytes::from(vec![b'x'; 32])],
        },
    };
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode + decode Put x1", |b| {
        let mut buf = BytesMut::with_capacity(256);
        b.iter(|| {
            encode(black_box(&put), &mut buf);
            black_box(decode(&mut buf, DEFAULT_MAX_FRAME).unwrap().unwrap())
        })
    });
    g.finish();
}

fn source_state(c: &mut Criterion) {
    let mut g = c.benchmark_group("source state");
    g.throughput(Throughput::Elements(1024));
    g.bench_function("put, lease and finish x1024", |b| {
        let mut state = SourceState::<()>::new(SourceOptions::default());
        state.add_consumer(1, "bench");
        let payload = Bytes::from(vec![b'x'; 32]);
        b.iter(|| {
            for _ in 0..1024 {
                state.put(payload.clone()).unwrap();
            }
            let GetResult::Items(items) = state.get(1, 1024, usize::MAX) else {
                panic!("items were queued");
            };
            let ids: Vec<u64> = items.iter().map(|d| d.id).collect();
            black_box(state.done(1, &ids));
        })
    });
    g.finish();
}

criterion_group!(benches, codec, source_state);
criterion_main!(benches);
