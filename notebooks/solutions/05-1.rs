// Two different faults, each repaired before the 6 s run ends: node-b crashes and comes back,
// then the application loses its link to node-a for a second and a half.
let my_schedule: Vec<FaultStep> = vec![
    FaultStep::at(1.0, Fault::kill_node("b")),
    FaultStep::at(2.5, Fault::restart_node("b")),
    FaultStep::at(3.5, Fault::Link(Link::client_to("a"), LinkFault::Cut)),
    FaultStep::at(5.0, Fault::Link(Link::client_to("a"), LinkFault::Heal)),
];
// Every fault is repaired and the final state can be read, so nothing acknowledged may be lost.
let my_prediction = Validity::Valid;
cluster.set_echo(false);
let my_bank = cluster
    .bank(BankPlan { duration: Duration::from_secs(6), schedule: my_schedule, ..BankPlan::default() })
    .expect("bank run with your schedule");
cluster.set_echo(true);
my_bank.summary_frame().expect("summary").show()
