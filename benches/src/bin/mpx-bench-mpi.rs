//! The raw MPI floors of the mpx benchmark: what the engines' collectives cost without mpx.
//!
//! Run under `mpirun -n 4`; rank 0 prints one JSON object `{"name": [seconds, ...], ...}` on
//! stdout. Each sample is the slowest rank's time for one call, taken right after a barrier:
//! the moment a cell using the collective could go on everywhere.
//!
//! Measured: `allreduce1` and `allreduce1m` (Allreduce of 1 and 1M f64), then for each move size
//! (8 MB and 80 MB of f64) `bcast{MB}`, `scatter{MB}` and `gather{MB}` (Bcast, Scatterv and
//! Gatherv from / to rank 0: `bcast8`, ..., `gather80`).
#![deny(warnings, missing_docs)]

use std::collections::BTreeMap;

use clap::Parser;
use mpi::{
    collective::SystemOperation,
    datatype::{Partition, PartitionMut},
    topology::SimpleCommunicator,
    traits::*,
    Count,
};

/// Sample counts.
#[derive(Parser)]
struct Args {
    /// Timed calls for latencies (the 1-double and 1M-double allreduces).
    #[arg(long, default_value_t = 200)]
    latency_samples: usize,
    /// Timed calls for 80 MB moves (Bcast, Scatterv, Gatherv), after 1 warm-up call.
    #[arg(long, default_value_t = 7)]
    big_samples: usize,
    /// Timed calls for 8 MB moves (Bcast, Scatterv, Gatherv).
    #[arg(long, default_value_t = 50)]
    medium_samples: usize,
    /// Untimed calls before the timed ones, per 8 MB move.
    #[arg(long, default_value_t = 5)]
    medium_warmup: usize,
    /// Untimed calls before the timed ones, per measurement.
    #[arg(long, default_value_t = 10)]
    warmup: usize,
    /// Ask for MPI_THREAD_MULTIPLE, as the mpx engine does (default: plain MPI_Init).
    #[arg(long)]
    thread_multiple: bool,
    /// Only the allreduces (no 8 MB or 80 MB moves).
    #[arg(long)]
    no_big: bool,
    /// Initialise and finalise MPI, nothing else (the MPI start-up floor).
    #[arg(long)]
    init_only: bool,
}

/// Elements of the 80 MB arrays (10M f64).
const BIG: usize = 10_000_000;
/// Elements of the 8 MB allreduce and moves (1M f64).
const MEDIUM: usize = 1_000_000;

/// Times `op` `warmup + samples` times and keeps the slowest rank's time of each timed call.
fn measure(world: &SimpleCommunicator, warmup: usize, samples: usize, mut op: impl FnMut()) -> Vec<f64> {
    let mut out = Vec::with_capacity(samples);
    for i in 0..warmup + samples {
        world.barrier();
        let t0 = mpi::time();
        op();
        let mine = mpi::time() - t0;
        let mut slowest = 0.0f64;
        world.all_reduce_into(&mine, &mut slowest, SystemOperation::max());
        if i >= warmup {
            out.push(slowest);
        }
    }
    out
}

/// Even split of `total` elements over `n` ranks, as MPI counts and displacements.
fn split(total: usize, n: usize) -> (Vec<Count>, Vec<Count>) {
    let counts: Vec<Count> = (0..n).map(|r| (total / n + usize::from(r < total % n)) as Count).collect();
    let displs = counts
        .iter()
        .scan(0, |acc, &c| {
            let d = *acc;
            *acc += c;
            Some(d)
        })
        .collect();
    (counts, displs)
}

/// Times Bcast, Scatterv and Gatherv of `elems` f64 between rank 0 and every rank (the byte
/// counts of the mpx data rows), as `bcast{MB}`, `scatter{MB}` and `gather{MB}` in `results`.
fn moves(
    world: &SimpleCommunicator,
    elems: usize,
    warmup: usize,
    samples: usize,
    results: &mut BTreeMap<String, Vec<f64>>,
) {
    let (rank, size) = (world.rank() as usize, world.size() as usize);
    let root = world.process_at_rank(0);
    let mb = elems * 8 / 1_000_000;
    let mut data = vec![1.0f64; elems];
    results
        .insert(format!("bcast{mb}"), measure(world, warmup, samples, || root.broadcast_into(&mut data[..])));

    let (counts, displs) = split(elems, size);
    let mut part = vec![0.0f64; counts[rank] as usize];
    results.insert(
        format!("scatter{mb}"),
        measure(world, warmup, samples, || {
            if rank == 0 {
                root.scatter_varcount_into_root(
                    &Partition::new(&data[..], &counts[..], &displs[..]),
                    &mut part[..],
                );
            } else {
                root.scatter_varcount_into(&mut part[..]);
            }
        }),
    );
    results.insert(
        format!("gather{mb}"),
        measure(world, warmup, samples, || {
            if rank == 0 {
                let mut recv = PartitionMut::new(&mut data[..], &counts[..], &displs[..]);
                root.gather_varcount_into_root(&part[..], &mut recv);
            } else {
                root.gather_varcount_into(&part[..]);
            }
        }),
    );
}

fn main() {
    let args = Args::parse();
    let universe = if args.thread_multiple {
        let (universe, level) =
            mpi::initialize_with_threading(mpi::Threading::Multiple).expect("MPI initialises once");
        assert_eq!(level, mpi::Threading::Multiple, "MPI_THREAD_MULTIPLE not granted");
        universe
    } else {
        mpi::initialize().expect("MPI initialises once")
    };
    if args.init_only {
        return;
    }
    let world = universe.world();
    let rank = world.rank();
    let (lat, warm) = (args.latency_samples, args.warmup);
    let mut results: BTreeMap<String, Vec<f64>> = BTreeMap::new();

    let (one, mut one_out) = (1.0f64, 0.0f64);
    results.insert(
        "allreduce1".into(),
        measure(&world, warm, lat, || world.all_reduce_into(&one, &mut one_out, SystemOperation::sum())),
    );

    let medium = vec![1.0f64; MEDIUM];
    let mut medium_out = vec![0.0f64; MEDIUM];
    results.insert(
        "allreduce1m".into(),
        measure(&world, warm, lat, || {
            world.all_reduce_into(&medium[..], &mut medium_out[..], SystemOperation::sum())
        }),
    );
    drop((medium, medium_out));
    if args.no_big {
        if rank == 0 {
            println!("{}", serde_json::to_string(&results).expect("JSON of numbers"));
        }
        return;
    }

    // The moves, 8 MB then 80 MB (one warm-up is plenty for calls as long as the 80 MB ones).
    for (elems, warmup, samples) in
        [(MEDIUM, args.medium_warmup, args.medium_samples), (BIG, 1, args.big_samples)]
    {
        moves(&world, elems, warmup, samples, &mut results);
    }

    if rank == 0 {
        println!("{}", serde_json::to_string(&results).expect("JSON of numbers"));
    }
}
