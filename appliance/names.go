package appliance

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Name rules. The reasons are the exact rule, because an admin or an
// identity provider must be able to tell what to change from the error
// alone.
const (
	MaxUserNameBytes  = 256
	MaxAdminNameBytes = 64

	UserNameRule = "must be at most 256 bytes of UTF-8 made of Unicode letters, marks, digits, punctuation, symbols " +
		"and the ASCII space (U+0020), without leading or trailing space and without '/'; control, format " +
		"(zero-width, bidi), private-use, unassigned and other space characters are refused; it is stored in NFC"
	AdminNameRule = "must be at most 64 bytes of UTF-8 made of Unicode letters, marks, digits, punctuation and " +
		"symbols, without spaces and without '/'; control, format (zero-width, bidi), private-use and unassigned " +
		"characters are refused; it is stored in NFC"
)

// NormalizeName is the form in which names are stored and compared:
// surrounding white space trimmed and Unicode NFC, so a decomposed "é"
// and the composed one are the same login.
func NormalizeName(s string) string { return norm.NFC.String(strings.TrimSpace(s)) }

// nameRunes are the categories a name may use. Everything else is out:
// Cc (BEL, ESC …) would reach terminals and logs, Cf (zero-width spaces,
// bidi overrides) makes two different names look the same, Co/Cn have no
// agreed glyph, and Z other than the ASCII space hides in plain sight.
var nameRunes = []*unicode.RangeTable{unicode.L, unicode.M, unicode.N, unicode.P, unicode.S}

// validNameChars reports whether s, already normalised, is valid UTF-8 of
// allowed runes only, with the ASCII space allowed inside when space is
// true.
func validNameChars(s string, space bool) bool {
	if !utf8.ValidString(s) || strings.ContainsRune(s, '/') {
		return false
	}
	for i, r := range s {
		switch {
		case r == ' ':
			if !space || i == 0 || i == len(s)-1 {
				return false
			}
		case r < utf8.RuneSelf:
			// ASCII fast path: printable except space (handled above).
			if r < 0x21 || r == 0x7f {
				return false
			}
		case !unicode.In(r, nameRunes...):
			return false
		}
	}
	return true
}

// ValidUserName reports whether a normalised user name satisfies
// UserNameRule.
func ValidUserName(s string) bool {
	return s != "" && len(s) <= MaxUserNameBytes && validNameChars(s, true)
}

// validAdminNameChars reports whether a normalised admin name satisfies
// AdminNameRule.
func validAdminNameChars(s string) bool {
	return s != "" && len(s) <= MaxAdminNameBytes && validNameChars(s, false)
}
