//! The bindings for the `portcullis:policy` world, generated from `wit/` (the single source
//! of truth for the contract).
//!
//! The boundary types live in [`portcullis::policy::types`] and are re-exported at the crate
//! root. The export macro is public (`pub_export_macro`) and resolves its types through
//! `portcullis_guest::bindings`, so policy crates export through the SDK without a
//! `wit-bindgen` dependency of their own; use [`crate::export_policy!`] rather than calling
//! it directly.

#![allow(missing_docs)] // the generated items carry the WIT documentation, not all items have some

wit_bindgen::generate!({
    world: "policy",
    path: "../../wit",
    pub_export_macro: true,
    default_bindings_module: "portcullis_guest::bindings",
    additional_derives: [PartialEq],
});
