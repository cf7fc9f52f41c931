//! Collectives from cells over a `LocalWorld` of several threads.

mod common;

use common::run_world;
use mpx_cells::{CellOutcome, Interpreter};

fn values(outs: &[CellOutcome]) -> Vec<Option<String>> {
    outs.iter()
        .map(|o| {
            assert!(o.error.is_none(), "cell failed: {:?}", o.error);
            o.value.clone()
        })
        .collect()
}

fn sums(i: &Interpreter) -> (f64, f64) {
    let local: f64 = i.get_array("a").expect("a").to_f64().iter().sum();
    let s = i.get_array("s").expect("s").to_vec_f64();
    assert_eq!(s.len(), 1);
    (local, s[0])
}

#[test]
fn psum_over_four_ranks() {
    let res = run_world(
        4,
        &["let a = rand(100);", "fn psum(a) { allreduce(sum(a), SUM) }", "let s = psum(a);"],
        sums,
    );
    let total: f64 = res.iter().map(|(_, (local, _))| local).sum();
    let first = res[0].1 .1;
    for (outs, (local, s)) in &res {
        values(outs);
        assert!(*local > 0.0);
        assert!((s - total).abs() < 1e-9, "{s} != {total}");
        assert_eq!(s.to_bits(), first.to_bits(), "ranks disagree");
    }
}

const VALS: &str = "let vals = [ndarray([1.5, -2.5]) * (rank + 1), ndarray([1.5, 2.0], \"f32\"), \
    ndarray([[1, 2], [3, 4]]) * (rank + 1), ndarray([7, -8], \"i32\"), ndarray([0, 255], \"u8\"), \
    ndarray([true, false]), 42 + rank, 3.25, true, \"text\", 'c', (), #{k: rank}];";

const DTYPES: &str = "[\"f64\", \"f32\", \"i64\", \"i32\", \"u8\", \"bool\"]";

#[test]
fn bcast_moves_every_dtype_and_scalar() {
    let res = run_world(
        3,
        &[
            VALS,
            "let b = bcast(if rank == 1 { vals } else { () }, 1); b",
            "b.filter(|x| type_of(x) == \"ndarray\").map(|x| x.dtype)",
            "b.filter(|x| type_of(x) == \"ndarray\").map(|x| x.shape)",
        ],
        |_| (),
    );
    let root = values(&res[1].0);
    for (outs, _) in &res {
        let v = values(outs);
        assert_eq!(v[1], root[1]);
        assert_eq!(v[2].as_deref(), Some(DTYPES));
        assert_eq!(v[3].as_deref(), Some("[[2], [2], [2, 2], [2], [2], [2]]"));
    }
    let shown = root[1].clone().expect("value");
    assert!(shown.starts_with("[[3.0, -5.0], [1.5, 2.0], [[2, 4],\n [6, 8]], [7, -8], [0, 255]"));
    assert!(shown.contains("[true, false], 43, 3.25, true, \"text\", c, (), #{\"k\": 1}"), "{shown}");
}

#[test]
fn allgather_returns_every_rank_value_in_order() {
    let res = run_world(
        4,
        &[
            "allgather(rank * 10)",
            "let g = allgather(ndarray([rank, rank], \"i32\")); g",
            "g.map(|x| x.dtype)",
            "allgather(ndarray([rank == 0], \"bool\"))",
            "allgather(ndarray([rank], \"u8\")).map(|x| x.dtype)",
        ],
        |_| (),
    );
    for (outs, _) in &res {
        let v = values(outs);
        assert_eq!(v[0].as_deref(), Some("[0, 10, 20, 30]"));
        assert_eq!(v[1].as_deref(), Some("[[0, 0], [1, 1], [2, 2], [3, 3]]"));
        assert_eq!(v[2].as_deref(), Some("[\"i32\", \"i32\", \"i32\", \"i32\"]"));
        assert_eq!(v[3].as_deref(), Some("[[true], [false], [false], [false]]"));
        assert_eq!(v[4].as_deref(), Some("[\"u8\", \"u8\", \"u8\", \"u8\"]"));
    }
}

#[test]
fn send_recv_ring_of_every_dtype() {
    let res = run_world(
        3,
        &[
            VALS,
            "send(vals, (rank + 1) % size, 7);\nlet r = recv((rank + size - 1) % size, 7); r",
            "vals",
            "r.filter(|x| type_of(x) == \"ndarray\").map(|x| x.dtype)",
        ],
        |_| (),
    );
    let n = res.len();
    for (rank, (outs, _)) in res.iter().enumerate() {
        let v = values(outs);
        let left = values(&res[(rank + n - 1) % n].0);
        assert_eq!(v[1], left[2], "rank {rank} got the left neighbour's values");
        assert_eq!(v[3].as_deref(), Some(DTYPES));
    }
}

#[test]
fn reduce_to_root_and_allreduce_types() {
    let res = run_world(
        4,
        &[
            "reduce(rank + 1, SUM, 2)",
            "reduce(ndarray([rank, 1]), \"max\", 0)",
            "let t = allreduce(rank, \"Sum\"); [t, type_of(t)]",
            "allreduce(rank * 1.5, PROD)",
            "let m = allreduce(ndarray([rank, -rank], \"i32\"), MIN); [m, m.dtype]",
            "let f = allreduce(ndarray([1.0], \"f32\"), SUM); [f, f.dtype]",
            "allreduce(ndarray([[rank, 1], [2, 3]]) * 1.0, MAX)",
        ],
        |_| (),
    );
    for (rank, (outs, _)) in res.iter().enumerate() {
        let v = values(outs);
        let expect_sum = (rank == 2).then(|| "10".to_string());
        assert_eq!(v[0], expect_sum);
        let expect_max = (rank == 0).then(|| "[3, 1]".to_string());
        assert_eq!(v[1], expect_max);
        assert_eq!(v[2].as_deref(), Some("[6, \"i64\"]"));
        assert_eq!(v[3].as_deref(), Some("0.0"));
        assert_eq!(v[4].as_deref(), Some("[[0, -3], \"i32\"]"));
        assert_eq!(v[5].as_deref(), Some("[[4.0], \"f64\"]"));
        assert_eq!(v[6].as_deref(), Some("[[3.0, 1.0],\n [2.0, 3.0]]"));
    }
}

#[test]
fn collective_argument_errors_are_cell_errors() {
    let res = run_world(
        2,
        &[
            "allreduce(1, \"avg\")",
            "bcast(1, 5)",
            "send(1, -1, 0)",
            "recv(0, -3)",
            "allreduce(\"x\", SUM)",
            "barrier(); rank",
        ],
        |_| (),
    );
    for (rank, (outs, _)) in res.iter().enumerate() {
        let kinds: Vec<&str> =
            outs[..5].iter().map(|o| o.error.as_ref().expect("error").ename.as_str()).collect();
        assert_eq!(kinds, ["ValueError", "ValueError", "ValueError", "ValueError", "TypeError"]);
        assert_eq!(outs[5].value.as_deref(), Some(rank.to_string().as_str()));
    }
}
