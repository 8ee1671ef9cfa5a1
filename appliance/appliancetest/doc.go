// Package appliancetest builds real appliance Services for other packages'
// tests: an in-memory store, a sealer under a fresh random master key, and
// Init done. It holds no fakes.
package appliancetest
