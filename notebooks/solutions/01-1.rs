// Reference solution of notebook 01's exercise (run by scripts/run-notebooks.py).
let node_b_pid: u32 = cluster
    .instances()
    .expect("instances")
    .into_iter()
    .find(|i| i.node == "node-b")
    .and_then(|i| i.pid)
    .expect("node-b's pid");
