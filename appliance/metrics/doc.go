// Package metrics is the Prometheus side of tokend's observability: one
// registry with the Go and process collectors, build information, and the
// recorders the doors and the Service are given (HTTP requests per route
// pattern, CT-KIP outcomes, authentication decisions, store commits), plus a
// collector that reads inventory gauges from the store at scrape time.
//
// Every name starts with tokend_; counters end in _total and histograms in
// _seconds; no label ever carries a serial, user name or other unbounded
// value.
package metrics
