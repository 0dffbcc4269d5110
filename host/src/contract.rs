//! Checks that a file is a component built against a contract this host speaks, before
//! anything of it runs, with errors that say what the file is and what to do about it.
//!
//! wasmtime's own link errors ("import `x` has the wrong type") are accurate but do not
//! tell a policy author which toolchain setting to change, so the checks here run first.

use wasmtime::component::Component;

use crate::capability::Capability;

/// The WIT package this host implements.
pub const PACKAGE: &str = "portcullis:policy";
/// Its version.
pub const VERSION: &str = "0.1.0";
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
        "was built against {PACKAGE}@{found}, but this host speaks {PACKAGE}@{VERSION} (compatible: {compatible}); rebuild the policy with the SDK for {VERSION}, or run a Portcullis release that speaks {found}"
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
    check_version(&version)?;

    let mut used = Vec::new();
    for (name, _) in ty.imports(engine) {
        let Some((iface, version)) = split_ours(name) else {
            return Err(ContractError::ForeignImport { import: name.to_owned() });
        };
        check_version(version.unwrap_or(""))?;
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

/// Semver compatibility for a `0.x` package: the same major and minor version.
fn check_version(found: &str) -> Result<(), ContractError> {
    let ours: Vec<&str> = VERSION.split('.').collect();
    let theirs: Vec<&str> = found.split('.').collect();
    let compatible = theirs.len() == 3 && theirs[0] == ours[0] && theirs[1] == ours[1];
    if compatible {
        Ok(())
    } else {
        Err(ContractError::IncompatibleVersion {
            found: if found.is_empty() { "(no version)".to_owned() } else { found.to_owned() },
            compatible: format!("{}.{}.x", ours[0], ours[1]),
        })
    }
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
        assert!(check_version("0.1.0").is_ok());
        assert!(check_version("0.1.7").is_ok());
        let err = check_version("0.2.0").unwrap_err();
        assert!(err.to_string().contains("portcullis:policy@0.2.0"), "{err}");
        assert!(err.to_string().contains("0.1.x"), "{err}");
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
