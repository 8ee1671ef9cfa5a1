// Package storetest is the one conformance suite every appliance.Store
// backend must pass (memstore, bbolt, etcd).
//
// A backend's own _test.go calls Run with a constructor for a fresh, empty
// store and runs it under -race. The suite checks the contract of
// appliance.Store and appliance.Tx as written in store.go: round trips,
// rollback, snapshot isolation, scan order and cursors, copy safety, lost
// updates under concurrency, retry safety, the write limits, read-only
// views, context cancellation and Close. Nothing in it is skipped: a row
// that cannot pass on a backend is a bug in that backend.
//
// The suite is split in two so that more can be added without touching the
// store rows: Run (store.go) checks the storage contract alone; a Service
// scenario (import → assign → distribute → provision → verify) belongs in a
// separate exported RunService in its own file, reusing the helpers in
// helpers.go.
package storetest
