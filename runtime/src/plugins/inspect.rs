//! Read what a plugin file declares without compiling it: is it a
//! component, which SDK built it, what does it import and export. Cheap
//! (one pass of wasmparser), so bad files are named before any compile.

use wasmparser::{ComponentTypeRef, Encoding, Parser, Payload};

/// What the top level of a wasm binary says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// `true` for a core module: not something Spool can run.
    pub core_module: bool,
    /// The `spool-sdk-version` custom section, when an SDK built it.
    pub sdk_version: Option<String>,
    /// Top-level import names (instances and functions, not types), e.g.
    /// `wasi:cli/stdout@0.2.6`.
    pub imports: Vec<String>,
    /// Top-level export names, e.g. `handle`.
    pub exports: Vec<String>,
}

/// The bytes are not a parseable wasm binary.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(pub String);

/// The custom section the SDK writes its version into (see `spool_sdk`).
pub const SDK_SECTION: &str = "spool-sdk-version";

/// Walk the binary's sections. Custom sections are looked for at every
/// depth (the SDK's section lives in the component's nested core module);
/// imports and exports only at the top level.
pub fn inspect(bytes: &[u8]) -> Result<Inspection, Malformed> {
    let mut out = Inspection {
        core_module: false,
        sdk_version: None,
        imports: Vec::new(),
        exports: Vec::new(),
    };
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| Malformed(e.to_string()))?;
        match payload {
            Payload::Version { encoding, .. } => {
                if depth == 0 {
                    out.core_module = encoding == Encoding::Module;
                }
                depth += 1;
            }
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::CustomSection(section) if section.name() == SDK_SECTION => {
                let text = String::from_utf8_lossy(section.data()).trim().to_string();
                out.sdk_version.get_or_insert(text);
            }
            Payload::ComponentImportSection(reader) if depth == 1 => {
                for import in reader {
                    let import = import.map_err(|e| Malformed(e.to_string()))?;
                    // Type imports (`use types.{job}` in a world) are names
                    // for types, not capabilities.
                    if !matches!(import.ty, ComponentTypeRef::Type(_)) {
                        out.imports.push(import.name.name.to_string());
                    }
                }
            }
            Payload::ComponentExportSection(reader) if depth == 1 => {
                for export in reader {
                    let export = export.map_err(|e| Malformed(e.to_string()))?;
                    out.exports.push(export.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    Ok(out)
}
