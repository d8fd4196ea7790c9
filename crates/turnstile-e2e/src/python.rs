// The Python the gRPC end-to-end test drives, shared by build.rs (`include!`d there, to mark
// the test ignored when it is missing) and the library (which runs it).

/// The virtualenv `.ci/run` makes for the Python gRPC client, relative to the workspace root.
pub const PYTHON_VENV: &str = "target/e2e-venv";

/// The modules the rate limit service's Python client imports (`grpcio`, `xds-protos`).
pub const GRPC_MODULES: [&str; 2] = ["grpc", "envoy.service.ratelimit.v3.rls_pb2_grpc"];

/// `$E2E_PYTHON` (not a `TURNSTILE_*` name: the gateway reads those as its settings), else the
/// virtualenv's interpreter under `workspace_root`.
pub(crate) fn python_candidate(workspace_root: &std::path::Path) -> std::path::PathBuf {
    std::env::var_os("E2E_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| workspace_root.join(PYTHON_VENV).join("bin/python"))
}

/// Whether `python` can import every one of `modules`.
pub(crate) fn python_imports(python: &std::path::Path, modules: &[&str]) -> bool {
    let imports = modules
        .iter()
        .map(|module| format!("import {module}"))
        .collect::<Vec<_>>()
        .join("; ");
    std::process::Command::new(python)
        .args(["-c", &imports])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}
