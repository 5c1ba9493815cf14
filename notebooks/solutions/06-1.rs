// Reference solution of notebook 06's exercise (run by scripts/run-notebooks.py).
cluster.stop_node("a").expect("stop node-a");
let mut client = cluster.failover_client().expect("a client over every node");
let served_by: String = client.sql("UPSERT exercise:1 SET done = true").expect("served by a node that answers").node;
cluster.restart_node("a").expect("node-a back");
