package otp

import "crypto/subtle"

// PIN length limits for AddPIN tokens (stoken refuses anything else).
const (
	MinPINLength = 4
	MaxPINLength = 8
)

// ValidatePIN reports whether pin is 4 to 8 decimal digits.
func ValidatePIN(pin string) error {
	if len(pin) < MinPINLength || len(pin) > MaxPINLength || !allDigits(pin) {
		return ErrPIN
	}
	return nil
}

// AddPIN folds a PIN into a tokencode the way AddPIN ("PINPad") software
// tokens display it: digit-wise addition modulo 10, right-aligned (the PIN's
// last digit onto the code's last digit), no carries. "0000" leaves the code
// unchanged.
//
// A PIN longer than the code is refused with ErrPINLength. stoken silently
// drops the PIN's leading digits in that case; accepting it here would make
// those digits meaningless, so enrolment must not allow the combination.
func AddPIN(code, pin string) (string, error) {
	return foldPIN(code, pin, false)
}

// RemovePIN is the inverse of AddPIN, for the server: it subtracts the PIN
// digit-wise modulo 10 from a submitted passcode, giving the tokencode to
// verify. RemovePIN(AddPIN(c, p), p) == c.
func RemovePIN(passcode, pin string) (string, error) {
	return foldPIN(passcode, pin, true)
}

// foldPIN adds (sub=false) or subtracts (sub=true) each PIN digit to the
// aligned code digit modulo 10. The arithmetic has no data-dependent branches
// or divisions because the PIN is a secret.
func foldPIN(code, pin string, sub bool) (string, error) {
	if len(code) < 1 || len(code) > SecurIDMaxDigits || !allDigits(code) {
		return "", ErrCode
	}
	if err := ValidatePIN(pin); err != nil {
		return "", err
	}
	if len(pin) > len(code) {
		return "", ErrPINLength
	}
	var out [SecurIDMaxDigits]byte
	off := len(code) - len(pin)
	for i := range len(code) {
		d := int(code[i] - '0')
		if i >= off { // a position, not a secret
			p := int(pin[i-off] - '0')
			if sub {
				p = 10 - p
			}
			d += p // 0..19
		}
		d -= 10 * subtle.ConstantTimeLessOrEq(10, d)
		out[i] = byte('0' + d)
	}
	return string(out[:len(code)]), nil
}
