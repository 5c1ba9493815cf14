// Reference solution of notebook 03's exercise (run by scripts/run-notebooks.py).
let relate = format!("RELATE {grace_id}->likes->{p1_id}");
cluster.sql("a", &relate).expect("your statement on node-a");
let graph_query = format!("SELECT VALUE ->likes->post.title FROM ONLY {grace_id}");
let liked_on_b = cluster.sql("b", &graph_query).expect("your graph query on node-b");
