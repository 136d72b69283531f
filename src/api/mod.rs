//! The Kubernetes object model, free of I/O: which resources exist and how objects of each
//! kind are defaulted, validated, selected, patched, decoded from protobuf and printed.
//! What is special about each kind lives in its strategy (`strategy`), which the registry
//! entry carries.

pub mod conversion;
pub mod defaults;
pub mod patch;
pub mod protobuf;
pub mod pruned;
pub mod quantity;
pub mod registry;
pub mod requester;
pub mod resources;
pub mod schema;
pub mod selector;
pub mod strategy;
pub mod table;
pub mod validation;
