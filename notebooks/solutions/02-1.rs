// ✏️ 1. add a node
let new_node: Option<String> = Some(cluster.add_node().expect("add a node"));
// ✏️ 2. create note:3 on that node
cluster
    .sql(new_node.as_deref().unwrap(), "CREATE note:3 SET text = 'written on the new node'")
    .expect("write on the new node");
// ✏️ 3. read note:3 on node-a and keep the number of rows it returned
let rows_on_a: usize = cluster.sql("a", "SELECT * FROM note:3").expect("read on node-a").row_count();
