//! `hostile-other-world`: a well-formed component that is not a Portcullis policy, for the
//! host's tests only.
//!
//! It exports `example:other/greeter@0.1.0` (`greet: func() -> string`) and imports
//! nothing, so the host must refuse it because it lacks the `portcullis:policy/handler`
//! export, not because of anything else.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

#[cfg(target_arch = "wasm32")]
// Shared by the hostile no_std crates that cannot use the SDK (another world, another
// contract version): allocator, panic handler, `cabi_realloc`.
#[path = "../../no_std_runtime.rs"]
mod runtime;

use alloc::string::{String, ToString};

wit_bindgen::generate!({
    inline: r"
        package example:other@0.1.0;

        interface greeter {
            greet: func() -> string;
        }

        world other {
            export greeter;
        }
    ",
    world: "other",
});

struct Greeter;

impl exports::example::other::greeter::Guest for Greeter {
    fn greet() -> String {
        "hello from another world".to_string()
    }
}

export!(Greeter);
