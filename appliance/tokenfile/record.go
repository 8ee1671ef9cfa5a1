package tokenfile

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"
)

// Kinds and algorithms. The values match the appliance's token model
// (appliance.KindSoftware, appliance.AlgSecurID, ...); they are repeated here
// so that the decoder depends on nothing but the standard library.
const (
	KindSoftware = "software"
	KindHardware = "hardware"

	AlgSecurID = "securid-aes"
	AlgHOTP    = "hotp"
	AlgTOTP    = "totp"

	HashSHA1   = "sha1"
	HashSHA256 = "sha256"
	HashSHA512 = "sha512"
)

// Sentinel errors. Every error that fails a whole file wraps one of them.
// None of the messages carries key material, passwords or seeds.
var (
	// ErrHeader: the CSV header is missing, empty, repeats a column, lacks
	// the serial column or names an unknown column.
	ErrHeader = errors.New("tokenfile: bad CSV header")
	// ErrMalformed: the file is not a well-formed document of the format.
	ErrMalformed = errors.New("tokenfile: malformed file")
	// ErrTooLarge: the file is larger than the limit.
	ErrTooLarge = errors.New("tokenfile: file too large")
	// ErrDTD: the XML has a document type declaration; DTDs and entities
	// are refused outright rather than processed.
	ErrDTD = errors.New("tokenfile: DTD or entity declaration not allowed")
	// ErrNeedKey: the file is encrypted and the options carry no pre-shared
	// key or password of the kind it needs.
	ErrNeedKey = errors.New("tokenfile: file is encrypted; a key or password is needed")
	// ErrWrongKey: the pre-shared key or password does not decrypt the file.
	ErrWrongKey = errors.New("tokenfile: wrong key or password")
	// ErrMACMismatch: a ValueMAC does not match its encrypted value. The file
	// was altered, or (rarely, see ErrWrongKey) the key is wrong.
	ErrMACMismatch = errors.New("tokenfile: MAC mismatch")
	// ErrMACMissing: an encrypted file lacks the MACMethod, the MACKey or a
	// ValueMAC. AES-CBC has no integrity of its own, so these are required.
	ErrMACMissing = errors.New("tokenfile: MAC missing")
	// ErrUnsupported: the file uses an encryption, MAC or key derivation
	// scheme, or a PSKC version, this package does not implement.
	ErrUnsupported = errors.New("tokenfile: unsupported")
)

// Seed is a plain token secret. It prints and logs as "[redacted]" whatever
// the verb, so a Record can be logged or formatted without leaking it; use
// the bytes directly to seal it.
type Seed []byte

const redacted = "[redacted]"

func (Seed) String() string               { return redacted }
func (Seed) GoString() string             { return redacted }
func (Seed) LogValue() slog.Value         { return slog.StringValue(redacted) }
func (Seed) Format(f fmt.State, _ rune)   { _, _ = io.WriteString(f, redacted) }
func (Seed) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// Zero overwrites the seed in place; call it once the seed is sealed.
func (s Seed) Zero() { clear(s) }

// Record is one decoded token.
type Record struct {
	Row       int       // see the package doc for numbering
	Serial    string    // 12 ASCII digits
	Kind      string    // KindSoftware | KindHardware
	Algorithm string    // AlgSecurID | AlgHOTP | AlgTOTP
	Hash      string    // HashSHA1 | HashSHA256 | HashSHA512 for OATH; "" for SecurID
	Digits    int       // 6 | 8
	Interval  int       // seconds: 30 | 60; 0 for HOTP
	Counter   uint64    // HOTP moving factor (PSKC Data/Counter)
	Time      int64     // PSKC Data/Time (TOTP/SecurID), as given; 0 if absent
	TimeDrift int64     // PSKC Data/TimeDrift in intervals, as given; 0 if absent
	ExpiresAt time.Time // zero if the file gives none
	PINMode   string    // PINModeNone | PINModePINPad | PINModeFob from RSA token files; "" otherwise
	Seed      Seed      // plain secret; nil for seedless CSV rows. The caller seals it.
}

// LogValue logs a Record without its seed, only whether it has one.
func (r Record) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Int("row", r.Row),
		slog.String("serial", r.Serial),
		slog.String("kind", r.Kind),
		slog.String("algorithm", r.Algorithm),
		slog.Int("digits", r.Digits),
		slog.Int("interval", r.Interval),
		slog.Bool("seeded", r.Seed != nil),
	)
}

// Rejection is a row that was not decoded, and why. Reason is meant for the
// import report and never contains secret material.
type Rejection struct {
	Row    int
	Reason string
}

func (r Rejection) String() string { return fmt.Sprintf("row %d: %s", r.Row, r.Reason) }

// Result is a whole decoded file.
type Result struct {
	Records    []Record
	Rejections []Rejection
}

// Sink receives decoded rows in file order. Either function may be nil. A
// non-nil error from either stops decoding and is returned unchanged.
type Sink struct {
	Record func(Record) error
	Reject func(Rejection) error
}

func (s Sink) record(r Record) error {
	if s.Record == nil {
		return nil
	}
	return s.Record(r)
}

func (s Sink) reject(row int, reason string) error {
	if s.Reject == nil {
		return nil
	}
	return s.Reject(Rejection{Row: row, Reason: reason})
}

// emit passes one decoded row of an XML file to s: a rejection when reason
// is set or the serial came before in the file (unit names where, as in
// "first in KeyPackage 3"), else the record. A seed s does not take is
// wiped.
func (s Sink) emit(rec Record, reason string, n int, seen map[string]int, unit string) error {
	if reason == "" {
		if first, dup := seen[rec.Serial]; dup {
			reason = fmt.Sprintf("duplicate serial %s, first in %s %d", rec.Serial, unit, first)
		} else {
			seen[rec.Serial] = n
		}
	}
	if reason != "" {
		rec.Seed.Zero()
		return s.reject(n, reason)
	}
	if s.Record == nil {
		rec.Seed.Zero()
		return nil
	}
	return s.Record(rec)
}

// checkKind refuses a Kind option (of the options type named opts) that is
// neither software nor hardware.
func checkKind(opts, kind string) error {
	switch kind {
	case "", KindHardware, KindSoftware:
		return nil
	}
	return fmt.Errorf("tokenfile: %s.Kind %q is not software or hardware", opts, kind)
}

// collector gathers records in fixed-size chunks and copies them once at the
// end: growing one slice of 100,000 Records by append allocates about five
// times the final size, since large slices grow by a quarter at a time.
type collector struct {
	chunks [][]Record
	n      int
	rej    []Rejection
}

const chunkSize = 4096

func (c *collector) sink() Sink {
	return Sink{
		Record: func(r Record) error {
			if len(c.chunks) == 0 || len(c.chunks[len(c.chunks)-1]) == chunkSize {
				c.chunks = append(c.chunks, make([]Record, 0, chunkSize))
			}
			last := &c.chunks[len(c.chunks)-1]
			*last = append(*last, r)
			c.n++
			return nil
		},
		Reject: func(r Rejection) error { c.rej = append(c.rej, r); return nil },
	}
}

func (c *collector) result() *Result {
	res := &Result{Rejections: c.rej}
	if c.n > 0 {
		res.Records = make([]Record, 0, c.n)
		for _, ch := range c.chunks {
			res.Records = append(res.Records, ch...)
		}
	}
	return res
}

// quote shows untrusted input in a reason, shortened so a garbage field
// cannot blow up the report.
func quote(s string) string {
	const max = 40
	if len(s) > max {
		return fmt.Sprintf("%q…", s[:max])
	}
	return fmt.Sprintf("%q", s)
}

// ValidSerial reports whether s is a token serial: exactly 12 ASCII digits.
func ValidSerial(s string) bool {
	if len(s) != 12 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// parseExpiry accepts RFC 3339 (xs:dateTime with zone), xs:dateTime without a
// zone (taken as UTC) and a bare date (00:00:00 UTC).
func parseExpiry(s string) (time.Time, bool) {
	if t, ok := parseDate(s); ok {
		return t, true
	}
	for _, layout := range [...]string{time.RFC3339, "2006-01-02T15:04:05"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}

// parseExpiryBytes is parseExpiry without converting the common YYYY-MM-DD
// case to a string: time.Parse allocates, and CSV files repeat the date on
// every row.
func parseExpiryBytes(b []byte) (time.Time, bool) {
	if len(b) == len("2006-01-02") {
		return parseDate(string(b))
	}
	return parseExpiry(string(b))
}

// parseDate parses YYYY-MM-DD, rejecting dates time.Date would normalise
// (2030-02-30).
func parseDate(s string) (time.Time, bool) {
	if len(s) != 10 || s[4] != '-' || s[7] != '-' {
		return time.Time{}, false
	}
	num := func(s string) int {
		n := 0
		for i := 0; i < len(s); i++ {
			if s[i] < '0' || s[i] > '9' {
				return -1
			}
			n = n*10 + int(s[i]-'0')
		}
		return n
	}
	y, m, d := num(s[:4]), num(s[5:7]), num(s[8:])
	if y < 0 || m < 1 || m > 12 || d < 1 || d > 31 {
		return time.Time{}, false
	}
	t := time.Date(y, time.Month(m), d, 0, 0, 0, 0, time.UTC)
	if t.Day() != d {
		return time.Time{}, false
	}
	return t, true
}
