//! Checks that a file is a component built against a contract this host speaks, before
//! anything of it runs, with errors that say what the file is and what to do about it.
//!
//! wasmtime's own link errors ("import `x` has the wrong type") are accurate but do not
//! tell a policy author which toolchain setting to change, so the checks here run first.

use wasmtime::component::Component;

use crate::capability::Capability;

/// The WIT package this host implements.
pub const PACKAGE: &str = "portcullis:policy";
/// Its current version: what the SDKs build against.
pub const VERSION: &str = "0.2.0";
/// Every version this host loads, newest first: components built against any patch
/// release of these minor versions load.
pub const ACCEPTED: [&str; 2] = ["0.2.0", "0.1.0"];

/// A version of the contract the host speaks. This is the one place that decides which one
/// a component speaks (by the version its `handler` export names); `crate::bindings` then
/// binds it with that version's bindings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Contract {
    /// `portcullis:policy@0.1.x`: header, query and JSON pointer targets; remove and replace.
    V0_1,
    /// `portcullis:policy@0.2.x`: adds the `json-name` and `detected` targets and `mask`.
    V0_2,
}

impl Contract {
    /// The version, e.g. `0.2.0`.
    pub fn version(self) -> &'static str {
        match self {
            Contract::V0_1 => "0.1.0",
            Contract::V0_2 => "0.2.0",
        }
    }

    /// The contract a version string belongs to (same major and minor), if this host
    /// speaks it.
    pub fn of_version(found: &str) -> Option<Contract> {
        let theirs: Vec<&str> = found.split('.').collect();
        if theirs.len() != 3 || theirs[0] != "0" {
            return None;
        }
        match theirs[1] {
            "1" => Some(Contract::V0_1),
            "2" => Some(Contract::V0_2),
            _ => None,
        }
    }
}

impl std::fmt::Display for Contract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{PACKAGE}@{}", self.version())
    }
}

/// The contract a component's handler export speaks, if any this host accepts.
pub fn speaks(engine: &wasmtime::Engine, component: &Component) -> Option<Contract> {
    component
        .component_type()
        .exports(engine)
        .find_map(|(name, _)| split_ours(name).filter(|(iface, _)| *iface == HANDLER).map(|(_, version)| version))
        .and_then(|version| Contract::of_version(version.unwrap_or("")))
}
/// The interface every policy exports.
pub const HANDLER: &str = "handler";

/// Why a file cannot be loaded as a policy. The caller adds the policy's name and path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ContractError {
    /// Not WebAssembly at all.
    #[error(
        "is not a WebAssembly file (it does not start with the `\\0asm` magic bytes); give the path of a built policy component (.wasm)"
    )]
    NotWasm,
    /// A core module rather than a component.
    #[error(
        "is a core WebAssembly module, not a component; policies must be components: build Rust policies for `--target wasm32-wasip2` (see scripts/build-policies.sh), or wrap a core module with `wasm-tools component new`"
    )]
    CoreModule,
    /// An unknown binary encoding version.
    #[error(
        "is WebAssembly with an unsupported encoding (version bytes {0:02x?}); rebuild it with a current toolchain"
    )]
    UnknownEncoding([u8; 4]),
    /// Exports no `portcullis:policy/handler`.
    #[error(
        "is a component for another world: it does not export `{PACKAGE}/{HANDLER}` (it exports: {exports}); build it against world `policy` of wit/policy.wit, e.g. with the portcullis-guest SDK"
    )]
    WrongWorld {
        /// What it exports instead.
        exports: String,
    },
    /// Built against an incompatible version of the contract.
    #[error(
        "was built against {PACKAGE}@{found}, but this host speaks {PACKAGE}@0.2.0 and {PACKAGE}@0.1.0 (compatible: {compatible}); rebuild the policy with the SDK for {VERSION}, or run a Portcullis release that speaks {found}"
    )]
    IncompatibleVersion {
        /// The version the component names.
        found: String,
        /// What this host accepts.
        compatible: String,
    },
    /// Imports something the host never provides (WASI, another package).
    #[error(
        "imports `{import}`, which Portcullis never provides: policies get no filesystem, network, environment or other WASI access; for Rust build with the no_std portcullis-guest SDK, for Python use `componentize-py --stub-wasi`, for JavaScript disable the WASI features"
    )]
    ForeignImport {
        /// The import's name.
        import: String,
    },
    /// Imports a capability that config does not grant it.
    #[error(
        "imports the `{capability}` capability (`{import}`), which its configuration does not grant; add `\"{capability}\"` to `capabilities` for this policy if it should have it"
    )]
    NotGranted {
        /// The capability.
        capability: Capability,
        /// The import's full name.
        import: String,
    },
}

/// What the header of a binary says it is.
pub fn check_header(bytes: &[u8]) -> Result<(), ContractError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(ContractError::NotWasm);
    }
    let version = [bytes[4], bytes[5], bytes[6], bytes[7]];
    match version {
        [1, 0, 0, 0] => Err(ContractError::CoreModule),
        // Component-model binaries: a pre-release version number in the first two bytes,
        // layer 1 in the last two.
        [_, _, 1, 0] => Ok(()),
        other => Err(ContractError::UnknownEncoding(other)),
    }
}

/// Which capabilities a compiled component imports, after checking that it exports the
/// handler at a compatible version, imports nothing foreign, and needs no capability
/// outside `granted`.
pub fn check_component(
    engine: &wasmtime::Engine,
    component: &Component,
    granted: &[Capability],
) -> Result<Vec<Capability>, ContractError> {
    let ty = component.component_type();
    let mut handler = None;
    let mut export_names = Vec::new();
    for (name, _) in ty.exports(engine) {
        export_names.push(name.to_owned());
        if let Some((iface, version)) = split_ours(name)
            && iface == HANDLER
        {
            handler = Some(version.unwrap_or("").to_owned());
        }
    }
    let Some(version) = handler else {
        let exports = if export_names.is_empty() { "nothing".to_owned() } else { export_names.join(", ") };
        return Err(ContractError::WrongWorld { exports });
    };
    let speaks = check_version(&version)?;

    let mut used = Vec::new();
    for (name, _) in ty.imports(engine) {
        let Some((iface, version)) = split_ours(name) else {
            return Err(ContractError::ForeignImport { import: name.to_owned() });
        };
        let version = version.unwrap_or("");
        // One component, one contract: imports of another accepted version would link
        // against host functions of a contract the handler does not speak.
        if check_version(version)? != speaks {
            return Err(ContractError::IncompatibleVersion {
                found: format!("{version} (in `{name}`, while its handler speaks {})", speaks.version()),
                compatible: format!("{}.x for every interface", &speaks.version()[..3]),
            });
        }
        if iface == "types" || iface == "settings" {
            continue;
        }
        let Some(capability) = Capability::from_interface(iface) else {
            return Err(ContractError::ForeignImport { import: name.to_owned() });
        };
        if !granted.contains(&capability) {
            return Err(ContractError::NotGranted { capability, import: name.to_owned() });
        }
        used.push(capability);
    }
    Ok(used)
}

/// `portcullis:policy/log@0.1.0` → `("log", Some("0.1.0"))`; other packages → `None`.
fn split_ours(name: &str) -> Option<(&str, Option<&str>)> {
    let rest = name.strip_prefix(PACKAGE)?.strip_prefix('/')?;
    Some(match rest.split_once('@') {
        Some((iface, version)) => (iface, Some(version)),
        None => (rest, None),
    })
}

/// Semver compatibility for a `0.x` package: the same major and minor version as one of
/// the accepted versions.
fn check_version(found: &str) -> Result<Contract, ContractError> {
    Contract::of_version(found).ok_or_else(|| ContractError::IncompatibleVersion {
        found: if found.is_empty() { "(no version)".to_owned() } else { found.to_owned() },
        compatible: "0.2.x, 0.1.x".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_tells_module_from_component() {
        assert_eq!(check_header(b"\0asm\x01\0\0\0rest"), Err(ContractError::CoreModule));
        assert_eq!(check_header(b"\0asm\x0d\0\x01\0rest"), Ok(()));
        assert_eq!(check_header(b"PK\x03\x04zip file"), Err(ContractError::NotWasm));
        assert_eq!(check_header(b""), Err(ContractError::NotWasm));
    }

    #[test]
    fn versions_compatible_within_minor() {
        assert_eq!(check_version("0.1.0"), Ok(Contract::V0_1));
        assert_eq!(check_version("0.1.7"), Ok(Contract::V0_1));
        assert_eq!(check_version("0.2.0"), Ok(Contract::V0_2));
        assert_eq!(check_version("0.2.3"), Ok(Contract::V0_2));
        let err = check_version("0.3.0").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("portcullis:policy@0.3.0"), "{text}");
        assert!(text.contains("0.1.x") && text.contains("0.2.x"), "{text}");
        assert!(text.contains("@0.1.0") && text.contains("@0.2.0"), "names both versions: {text}");
        assert!(check_version("1.1.0").is_err());
        assert!(check_version("").is_err());
    }

    #[test]
    fn names_split_into_interface_and_version() {
        assert_eq!(split_ours("portcullis:policy/log@0.1.0"), Some(("log", Some("0.1.0"))));
        assert_eq!(split_ours("wasi:cli/environment@0.2.9"), None);
        assert_eq!(split_ours("portcullis:policyx/log@0.1.0"), None);
    }
}
