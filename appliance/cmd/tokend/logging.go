package main

import (
	"fmt"
	"io"
	"log"
	"log/slog"
)

// newLogger builds the process logger: a JSON or text handler writing to w,
// filtering below cfg.Level. Unknown formats or levels are errors (Validate
// reports them earlier with the other configuration problems).
//
// Nothing secret is ever handed to the logger by this package: the master key
// is a secretBytes (it redacts itself), the admin token is never logged.
func newLogger(cfg LogConfig, w io.Writer) (*slog.Logger, error) {
	level, err := parseLogLevel(cfg.Level)
	if err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: level}
	switch cfg.Format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("log.format %q: want one of %s", cfg.Format, quotedList(logFormats))
	}
}

// parseLogLevel accepts exactly debug, info, warn and error.
func parseLogLevel(s string) (slog.Level, error) {
	switch s {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	default:
		return 0, fmt.Errorf("log.level %q: want one of %s", s, quotedList(logLevels))
	}
}

// httpErrorLog adapts logger for http.Server.ErrorLog, so the server's own
// messages (TLS handshake failures from scanners, panics in handlers) end up
// in the structured log at warn level, tagged with the server's name,
// instead of on bare stderr.
func httpErrorLog(logger *slog.Logger, server string) *log.Logger {
	return slog.NewLogLogger(logger.With("server", server).Handler(), slog.LevelWarn)
}
