//! The Kubernetes object model, free of I/O: which resources exist and how objects of each
//! kind are defaulted, validated, selected, patched, decoded from protobuf and printed.

pub mod defaults;
pub mod patch;
pub mod protobuf;
pub mod registry;
pub mod selector;
pub mod table;
pub mod validation;
