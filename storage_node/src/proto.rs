//! The generated kvproto messages and service traits (see `build.rs`).
//!
//! Only `kvrpcpb` (transactional KV messages), `pdpb` (placement driver), `metapb` (stores and
//! regions), `errorpb` (region errors) and `tikvpb` (the TiKV service) matter to this node;
//! the rest are imported by those files and come along.
#![allow(clippy::all, missing_docs, rustdoc::all)]

include!(concat!(env!("OUT_DIR"), "/kvproto.rs"));
