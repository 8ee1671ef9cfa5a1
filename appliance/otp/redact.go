package otp

import (
	"fmt"
	"io"
	"log/slog"
)

// redacted is what secret-holding values print as. Format (not only String)
// is implemented because fmt ignores String for verbs such as %d or %+v on
// structs, which would otherwise dump the seed bytes.
const redacted = "[redacted]"

// String, GoString, LogValue (log/slog) and Format (every fmt verb) print
// a SecurID, HOTP or TOTP as "[redacted]", for values and pointers alike.
func (SecurID) String() string             { return redacted }
func (SecurID) GoString() string           { return redacted }
func (SecurID) LogValue() slog.Value       { return slog.StringValue(redacted) }
func (SecurID) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, redacted) }
func (HOTP) String() string                { return redacted }
func (HOTP) GoString() string              { return redacted }
func (HOTP) LogValue() slog.Value          { return slog.StringValue(redacted) }
func (HOTP) Format(f fmt.State, _ rune)    { _, _ = io.WriteString(f, redacted) }
func (TOTP) String() string                { return redacted }
func (TOTP) GoString() string              { return redacted }
func (TOTP) LogValue() slog.Value          { return slog.StringValue(redacted) }
func (TOTP) Format(f fmt.State, _ rune)    { _, _ = io.WriteString(f, redacted) }
