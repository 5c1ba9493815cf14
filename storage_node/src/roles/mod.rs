//! The replicated tier's processes, as TiKV deploys them: one PD ([`pd`]) and N stores
//! ([`store`]), each its own process on its own port. (The one-process node, PD and one store
//! together, is [`crate::Node`].)

pub mod pd;
pub mod store;
