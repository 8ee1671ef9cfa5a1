package appliance

import (
	"fmt"
	"strconv"
)

// schemaError explains a store whose schema version (meta/schema) is not
// the one this tokend reads. Stores of the current version written by an
// older tokend are brought up to date by Init (prepareIndexes adds what
// they lack); a store of another version is refused, never guessed at: a
// newer tokend may have written records this one would misread or drop.
func schemaError(v []byte) error {
	want, _ := strconv.Atoi(schemaVersion)
	have, err := strconv.Atoi(string(v))
	switch {
	case err != nil || have < 1:
		return fmt.Errorf("store schema version %.16q is not one tokend writes (this tokend reads %d): %w", v, want, ErrInvalidState)
	case have > want:
		return fmt.Errorf("the store was written by a newer tokend (schema version %d; this tokend reads %d): "+
			"run that tokend version or a later one, or restore a backup taken before the upgrade: %w", have, want, ErrInvalidState)
	default:
		return fmt.Errorf("the store has schema version %d, older than this tokend reads (%d) and it has no migration from it: %w",
			have, want, ErrInvalidState)
	}
}
