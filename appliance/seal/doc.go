// Package seal owns the appliance's secret-keeping: it derives purpose-bound
// keys from the master key, seals secrets (token seeds, the CT-KIP server key)
// with AES-256-GCM bound to their owner by associated data, computes keyed
// hashes for secrets that are only ever compared (activation codes, API
// tokens), and produces the check value that detects a wrong master key at
// start-up.
package seal
