//! `Config::parse` over arbitrary UTF-8, then what loading does with a parsed config
//! before it touches any file: engine settings, policy settings turned into JSON, and the
//! routes' host patterns and path globs compiled and matched.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use portcullis_host::Config;
use portcullis_host::route::{HostPattern, PathGlob};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = Path::new("fuzz/portcullis.toml");
    let config = match Config::parse(text, path) {
        Ok(config) => config,
        Err(err) => {
            assert!(err.to_string().contains("fuzz/portcullis.toml"), "error does not name the file: {err}");
            return;
        }
    };
    let _ = config.engine_config(Path::new("fuzz"));
    for policy in config.policies.values() {
        if let Some(settings) = &policy.settings {
            let _ = serde_json::to_value(settings);
        }
    }
    for route in &config.routes {
        for glob in &route.paths {
            if let Ok(glob) = PathGlob::new(glob) {
                let _ = glob.matches("/a/b/c");
                let _ = glob.matches(glob.as_str());
            }
        }
        for host in &route.hosts {
            if let Ok(pattern) = HostPattern::new(host) {
                let _ = pattern.matches("api.example.com");
                let _ = pattern.matches(host);
            }
        }
    }
});
