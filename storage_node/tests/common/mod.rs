//! Shared test scaffolding: an in-process storage node on an ephemeral loopback port, and the
//! TiKV client SurrealDB uses, configured for each of the three commit paths.
#![allow(dead_code)]

use storage_node::{Config, Node};
use tikv_client::{CheckLevel, Error, TransactionClient, TransactionOptions};

/// A running node plus its data directory (deleted on drop).
pub struct TestNode {
    pub node: Node,
    pub dir: tempfile::TempDir,
}

impl TestNode {
    pub async fn start() -> TestNode {
        let dir = tempfile::tempdir().unwrap();
        let node = Node::start(Config {
            addr: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().to_path_buf(),
            trace: None,
            split: Default::default(),
        })
        .await
        .expect("node starts");
        TestNode { node, dir }
    }

    pub fn endpoint(&self) -> String {
        self.node.addr.to_string()
    }

    pub async fn client(&self) -> TransactionClient {
        TransactionClient::new(vec![self.endpoint()])
            .await
            .expect("client connects")
    }
}

/// The three ways SurrealDB can commit: its default (1PC for small writes, else async
/// commit), async commit alone, and classic two-phase commit (both env knobs off).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    OnePc,
    AsyncCommit,
    TwoPc,
}

pub const ALL_MODES: [Mode; 3] = [Mode::OnePc, Mode::AsyncCommit, Mode::TwoPc];

pub fn options(mode: Mode) -> TransactionOptions {
    let o = TransactionOptions::new_optimistic().drop_check(CheckLevel::None);
    match mode {
        Mode::OnePc => o.use_async_commit().try_one_pc(),
        Mode::AsyncCommit => o.use_async_commit(),
        Mode::TwoPc => o,
    }
}

/// True when the error is (or contains) a write conflict — what SurrealDB turns into its
/// retryable "Transaction conflict".
pub fn is_write_conflict(e: &Error) -> bool {
    match e {
        Error::KeyError(ke) => ke.conflict.is_some(),
        Error::MultipleKeyErrors(es) | Error::ExtractedErrors(es) => {
            es.iter().any(is_write_conflict)
        }
        Error::UndeterminedError(inner) => is_write_conflict(inner),
        _ => false,
    }
}

pub fn key(i: usize) -> Vec<u8> {
    format!("k{i:02}").into_bytes()
}
