// Command tokend is the token appliance: one binary, the only composition
// root of the module.
//
// Subcommands: serve (the daemon), version, and the offline tools added
// beside them. Each subcommand is a method of app returning a
// *cobra.Command; app carries the process's outside world (streams,
// environment, host name, clock, randomness) so every command is testable.
//
// This package is split in two halves. The infrastructure half:
//
//   - config.go: Config, decoded strictly from YAML over defaults, then
//     TOKEND_* variables, then flags; Validate reports every problem at once
//     as a *ConfigError.
//   - logging.go: the slog logger (text or JSON, level).
//   - masterkey.go: the data directory (0700), the master key file (0600,
//     64 hex characters, or a systemd credential), atomic secret files.
//   - tlscert.go: the TLS pair: loaded when configured, else a self-signed
//     ECDSA P-256 certificate generated once in the data directory.
//   - lifecycle.go: serverGroup (bind all, ready, sd_notify READY=1, serve,
//     STOPPING=1, graceful shutdown) and prepareServe, which assembles the
//     serveEnv handed to runServe.
//   - main.go, version.go: the command tree, run() and the exit code.
//
// The wiring half, serve.go, builds the store, the Service, the admin
// router and the CT-KIP handler from a serveEnv, and runs them as a
// serverGroup.
//
// Start-up order of `tokend serve`: configuration → logger → data directory
// → master key → TLS → runServe. Errors end the process with one line
// "tokend: <message>" on stderr and exit code 1. No secret (master key,
// admin token) is ever logged or printed.
package main
