// Package accesslog owns the HTTP access log line every tokend listener
// writes: one format (listener, method, route pattern, status, duration_ms,
// remote address without port) and a rate limit, so a flood of
// unauthenticated requests on a public door cannot flood the log. Lines
// over the limit are counted and the count rides on the next line written.
package accesslog
