// Reference solution of notebook 04's exercise (run by scripts/run-notebooks.py).
let i_predict_slower: Option<bool> = Some(true);
let my_plan = WorkloadPlan::write_only().concurrency(50).duration(Duration::from_secs(3));
let my_run = cluster.run_workload(my_plan).expect("your workload");
my_run.headline()
