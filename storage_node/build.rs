//! Generates the PD and TiKV gRPC server traits (and clients, for store-to-store Raft) from the kvproto `.proto` files in `proto/`.
//!
//! The files are copied unchanged from the `surrealdb-tikv-client` 0.5.0 crate (Apache-2.0,
//! see `proto/LICENSE-kvproto`), so our server and SurrealDB's client agree on every field.
//! `protoc` comes from the `protoc-bin-vendored` crate: building needs no system package.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // SAFETY: build scripts are single-threaded; nothing else reads the environment here.
    unsafe { std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    tonic_prost_build::configure()
        // We are the server (SurrealDB brings its own client), and a client too: stores send
        // each other Raft messages over TiKV's own `Raft` stream.
        .build_server(true)
        .build_client(true)
        // TiKV's service has ~50 RPCs and SurrealDB uses 15; the rest answer UNIMPLEMENTED.
        .generate_default_stubs(true)
        .include_file("kvproto.rs")
        .compile_protos(
            &["proto/tikvpb.proto", "proto/pdpb.proto"],
            &["proto", "proto/include"],
        )?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
