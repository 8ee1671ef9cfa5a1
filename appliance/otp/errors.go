package otp

import "errors"

// Errors returned for invalid parameters. They are sentinels so callers can
// map them to their own vocabulary with errors.Is.
var (
	ErrSerial    = errors.New("otp: serial must be 1 to 12 decimal digits")
	ErrDigits    = errors.New("otp: unsupported number of digits")
	ErrInterval  = errors.New("otp: unsupported interval")
	ErrTimeRange = errors.New("otp: time outside the supported range")
	ErrPIN       = errors.New("otp: PIN must be 4 to 8 decimal digits")
	ErrPINLength = errors.New("otp: PIN longer than the code")
	ErrCode      = errors.New("otp: code must be 1 to 8 decimal digits")
	ErrKey       = errors.New("otp: empty or wrong-sized key")
	ErrAlgorithm = errors.New("otp: unsupported hash algorithm")
	ErrWindow    = errors.New("otp: invalid verification window")
)
