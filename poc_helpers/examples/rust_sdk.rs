//! The official Rust SDK talking to one lab node directly, without `poc_helpers`: what your own
//! application would do. docs/api.md shows this file, and the docs test (scripts/check-docs.py)
//! runs it against a live lab:
//!
//! ```text
//! cargo run -q -p poc_helpers --example rust_sdk -- 127.0.0.1:8001
//! ```
use serde_json::json;
use surrealdb::Surreal;
use surrealdb::engine::remote::ws::Ws;
use surrealdb::opt::auth::Root;
use surrealdb::types::Value;

#[tokio::main]
async fn main() -> Result<(), surrealdb::Error> {
    // node-a listens on 127.0.0.1:8000, node-b on 127.0.0.1:8001 (see `lab status`).
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8000".to_string());
    // A WebSocket session to ws://ADDR/rpc; the lab's nodes have the root user root/root.
    let db = Surreal::new::<Ws>(addr.as_str()).await?;
    db.signin(Root {
        username: "root".into(),
        password: "root".into(),
    })
    .await?;
    db.use_ns("lab").use_db("main").await?;

    // UPSERT, so running the example twice is not an error.
    db.query("UPSERT user:ken CONTENT { name: $name, email: $email }")
        .bind(json!({ "name": "Ken", "email": "ken@example.com" }))
        .await?
        .check()?;
    let mut response = db
        .query("SELECT name, email FROM user ORDER BY name")
        .await?;
    let users: Value = response.take(0)?;
    println!("{}", users.into_json_value());
    Ok(())
}
