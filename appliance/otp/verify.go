package otp

import "crypto/subtle"

// MaxWindow bounds the steps either side of the centre that Verify will
// compute, so a misconfigured policy cannot turn one login into an
// unbounded amount of AES/HMAC work.
const MaxWindow = 1000

// Generator yields the codes of n consecutive steps starting at first.
// SecurID, TOTP and HOTP implement it.
type Generator interface {
	Codes(first int64, n int) ([]string, error)
}

// Equal compares two codes in constant time (for equal lengths; the length
// of a code is public).
func Equal(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// Verify looks for code among the steps center-window … center+window and
// returns the matching step. Every candidate is computed and compared in
// constant time, and the choice among matches is branch-free, so timing
// reveals neither how many digits matched nor where. If several steps carry
// the same code, the one nearest the centre wins (the earlier one on a tie).
//
// Replay protection is the caller's: record the returned step and refuse
// steps not greater than the last accepted one.
func Verify(g Generator, code string, center int64, window int) (step int64, ok bool, err error) {
	if window < 0 || window > MaxWindow || center-int64(window) > center {
		return 0, false, ErrWindow
	}
	first := center - int64(window)
	codes, err := g.Codes(first, 2*window+1)
	if err != nil {
		return 0, false, err
	}
	// Visit by distance from the centre: 0, -1, +1, -2, +2, …
	found, idx := 0, 0
	for d := 0; d <= window; d++ {
		lo, hi := window-d, window+d
		found, idx = pick(code, codes[lo], lo, found, idx)
		if d != 0 {
			found, idx = pick(code, codes[hi], hi, found, idx)
		}
	}
	if found == 0 {
		return 0, false, nil
	}
	return first + int64(idx), true, nil
}

// VerifyRange looks for code among the n steps first … first+n-1 (n <=
// 2·MaxWindow+1) and returns the earliest matching step, comparing every
// candidate in constant time. It suits HOTP look-ahead and resynchronisation.
func VerifyRange(g Generator, code string, first int64, n int) (step int64, ok bool, err error) {
	if n < 1 || n > 2*MaxWindow+1 {
		return 0, false, ErrWindow
	}
	codes, err := g.Codes(first, n)
	if err != nil {
		return 0, false, err
	}
	found, idx := 0, 0
	for i := range codes {
		found, idx = pick(code, codes[i], i, found, idx)
	}
	if found == 0 {
		return 0, false, nil
	}
	return first + int64(idx), true, nil
}

// pick records index i if candidate matches code and nothing matched before.
func pick(code, candidate string, i, found, idx int) (int, int) {
	eq := subtle.ConstantTimeCompare([]byte(code), []byte(candidate))
	take := eq &^ found
	return found | eq, subtle.ConstantTimeSelect(take, i, idx)
}
