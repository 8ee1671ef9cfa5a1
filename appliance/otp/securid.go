package otp

import (
	"crypto/aes"
	"encoding/binary"
	"time"
)

// Limits of the SecurID algorithm as implemented here. The time string holds
// the year as four BCD digits, so years beyond 9999 cannot be encoded; times
// before the Unix epoch are refused because stoken cannot produce them either.
const (
	SecurIDSerialLen = 12 // digits in a normalised serial number
	SecurIDMinDigits = 1
	SecurIDMaxDigits = 8

	securIDMaxUnix   = 253402300799 // 9999-12-31T23:59:59Z
	securIDChainSize = 4            // codes delivered by one AES chain
)

// SecurID is one RSA SecurID 128-bit AES time-based token.
//
// Steps are Unix time divided by Interval (floored). Because 4×60 s and 4×30 s
// both divide an hour, the AES chain for step k is shared by the four steps
// k - k mod 4 … k - k mod 4 + 3, and those blocks start on UTC minute
// boundaries exactly as the algorithm's rounded minute requires.
type SecurID struct {
	Seed     [16]byte // AES-128 token seed (K_TOKEN)
	Serial   string   // up to 12 decimal digits; shorter ones are left-padded with 0
	Digits   int      // 1–8; 6 or 8 in practice
	Interval int      // seconds per code: 30 or 60
}

// NewSecurID checks the parameters and returns a token with a normalised
// 12-digit serial.
func NewSecurID(seed []byte, serial string, digits, interval int) (SecurID, error) {
	var s SecurID
	if len(seed) != len(s.Seed) {
		return SecurID{}, ErrKey
	}
	sn, err := NormalizeSerial(serial)
	if err != nil {
		return SecurID{}, err
	}
	copy(s.Seed[:], seed)
	s.Serial, s.Digits, s.Interval = sn, digits, interval
	if err := s.Validate(); err != nil {
		return SecurID{}, err
	}
	return s, nil
}

// NormalizeSerial returns serial left-padded with zeros to 12 digits. It
// refuses empty, over-long and non-decimal serials rather than guessing.
func NormalizeSerial(serial string) (string, error) {
	if len(serial) == 0 || len(serial) > SecurIDSerialLen || !allDigits(serial) {
		return "", ErrSerial
	}
	const zeros = "000000000000"
	return zeros[:SecurIDSerialLen-len(serial)] + serial, nil
}

// Validate reports whether the serial, digit count and interval are usable.
func (s SecurID) Validate() error {
	if _, err := securIDSerialBCD(s.Serial); err != nil {
		return err
	}
	if s.Digits < SecurIDMinDigits || s.Digits > SecurIDMaxDigits {
		return ErrDigits
	}
	if s.Interval != 30 && s.Interval != 60 {
		return ErrInterval
	}
	return nil
}

// Step returns the time-step index of t (Unix seconds / Interval, floored):
// the unit for replay protection and drift tracking. It returns 0 when
// Interval is invalid (Code and friends report that error).
func (s SecurID) Step(t time.Time) int64 {
	if s.Interval != 30 && s.Interval != 60 {
		return 0
	}
	return floorDiv(t.Unix(), int64(s.Interval))
}

// StepTime returns the first second of a time step.
func (s SecurID) StepTime(step int64) time.Time {
	return time.Unix(step*int64(s.Interval), 0).UTC()
}

// Code returns the tokencode shown at time t.
func (s SecurID) Code(t time.Time) (string, error) {
	if err := s.Validate(); err != nil {
		return "", err
	}
	return s.CodeAt(s.Step(t))
}

// CodeAt returns the tokencode of one time step.
func (s SecurID) CodeAt(step int64) (string, error) {
	var out [1]string
	if err := s.fill(step, out[:]); err != nil {
		return "", err
	}
	return out[0], nil
}

// Codes returns the tokencodes of the n consecutive steps first, first+1, …,
// computing one AES chain per four steps rather than one per step.
func (s SecurID) Codes(first int64, n int) ([]string, error) {
	if n < 0 {
		return nil, ErrWindow
	}
	out := make([]string, n)
	if err := s.fill(first, out); err != nil {
		return nil, err
	}
	return out, nil
}

func (s SecurID) fill(first int64, out []string) error {
	if err := s.Validate(); err != nil {
		return err
	}
	if len(out) == 0 {
		return nil
	}
	serial, _ := securIDSerialBCD(s.Serial) // checked by Validate
	interval := int64(s.Interval)
	last := first + int64(len(out)) - 1
	if first < 0 || last < first || last > securIDMaxUnix/interval {
		return ErrTimeRange
	}
	var (
		codes     [16]byte
		haveChain bool
		chainOf   int64
	)
	for i := range out {
		step := first + int64(i)
		chain := step / securIDChainSize // step >= 0, so this is floor
		if !haveChain || chain != chainOf {
			codes = securIDChain(&s.Seed, serial, chain*securIDChainSize*interval)
			haveChain, chainOf = true, chain
		}
		pos := step % securIDChainSize
		out[i] = formatDecimal(binary.BigEndian.Uint32(codes[4*pos:]), s.Digits)
	}
	return nil
}

// securIDChain runs the five chained AES-128 encryptions for the block of
// four steps starting at Unix time start (a multiple of 4×interval, hence on
// a UTC minute whose number is already rounded down as §9.2 step 1 asks).
func securIDChain(seed *[16]byte, serial [4]byte, start int64) [16]byte {
	tm := time.Unix(start, 0).UTC()
	year := tm.Year()
	t := [8]byte{
		bcd(year / 100), bcd(year % 100),
		bcd(int(tm.Month())), bcd(tm.Day()),
		bcd(tm.Hour()), bcd(tm.Minute()),
		0, 0,
	}
	key := *seed
	var block [16]byte
	// n is how much of the time string each of the five chained encryptions
	// sees (ctkip.md §9.2 step 4); the rest of the first 8 bytes stay 0xaa.
	for _, n := range [...]int{2, 3, 4, 5, 8} {
		for i := range 8 {
			if i < n {
				block[i] = t[i]
			} else {
				block[i] = 0xaa
			}
		}
		copy(block[8:12], serial[:])
		block[12], block[13], block[14], block[15] = 0xbb, 0xbb, 0xbb, 0xbb
		c, err := aes.NewCipher(key[:])
		if err != nil {
			panic("otp: aes.NewCipher rejected a 16-byte key: " + err.Error()) // cannot happen
		}
		c.Encrypt(key[:], block[:]) // output becomes the next key
	}
	return key
}

// securIDSerialBCD packs serial digits 5–12 into four BCD bytes.
func securIDSerialBCD(serial string) ([4]byte, error) {
	sn, err := NormalizeSerial(serial)
	if err != nil {
		return [4]byte{}, err
	}
	var out [4]byte
	for i := range out {
		out[i] = (sn[4+2*i]-'0')<<4 | (sn[5+2*i] - '0')
	}
	return out, nil
}

// bcd packs a value 0–99 into one BCD byte.
func bcd(v int) byte { return byte(v/10)<<4 | byte(v%10) }

// formatDecimal returns the lowest digits decimal digits of v, zero-padded.
func formatDecimal(v uint32, digits int) string {
	var buf [10]byte
	for i := digits - 1; i >= 0; i-- {
		buf[i] = byte('0' + v%10)
		v /= 10
	}
	return string(buf[:digits])
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// floorDiv divides rounding towards negative infinity; b > 0.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}
