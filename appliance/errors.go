package appliance

import (
	"errors"
	"strings"
)

// Sentinel errors of the domain and the store. Doors (admin API, CT-KIP,
// sync, authentication) translate them once into their own vocabulary.
var (
	ErrNotFound     = errors.New("not found")
	ErrExists       = errors.New("already exists")
	ErrConflict     = errors.New("conflict")
	ErrLimit        = errors.New("limit reached")
	ErrInvalidState = errors.New("invalid state")
	ErrTxTooLarge   = errors.New("transaction too large")
	ErrReadOnly     = errors.New("read-only transaction")
	ErrClosed       = errors.New("store closed")

	// ErrStoreUnavailable means the store could not make a write durable
	// (a failed write or fsync, a full disk, a size cap). The transaction
	// was rolled back, except that a failure of the very last fsync leaves
	// its outcome unknown, as a timeout would: all of it or none of it.
	// Backends wrap the cause with it; doors answer "unavailable, retry
	// later", not an internal error. Reads may still work.
	ErrStoreUnavailable = errors.New("store unavailable")
)

// FieldError is one problem with one input field.
type FieldError struct {
	Field  string
	Reason string
}

// ValidationError collects every problem found in an input, so a caller can
// fix all of them at once.
type ValidationError struct {
	Problems []FieldError
}

func (e *ValidationError) Error() string {
	parts := make([]string, 0, len(e.Problems))
	for _, p := range e.Problems {
		if p.Field == "" {
			parts = append(parts, p.Reason)
			continue
		}
		parts = append(parts, p.Field+": "+p.Reason)
	}
	return "invalid input: " + strings.Join(parts, "; ")
}

// Add records a problem.
func (e *ValidationError) Add(field, reason string) {
	e.Problems = append(e.Problems, FieldError{field, reason})
}

// Err returns e if it holds a problem, else nil.
func (e *ValidationError) Err() error {
	if e == nil || len(e.Problems) == 0 {
		return nil
	}
	return e
}
