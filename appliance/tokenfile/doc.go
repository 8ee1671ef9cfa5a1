// Package tokenfile decodes token record files into plain records: the CSV
// list of serials (seedless tokens that CT-KIP will seed later) and PSKC key
// containers (RFC 6030), plain or encrypted with a pre-shared AES key or a
// PBKDF2-derived key.
//
// The package owns parsing and checking of the files only. It reads no
// database, seals nothing and decides nothing about duplicates with tokens
// already stored: the import job does that with the Records it gets here,
// and seals Record.Seed before it is stored. Nothing here keeps state between
// calls, so decoders may run concurrently.
//
// # Rows and rejections
//
// A file either fails as a whole (an error, wrapped around one of the
// sentinels such as ErrHeader, ErrWrongKey or ErrMACMismatch) or decodes into
// Records and Rejections. A row is never half-imported: it becomes exactly one
// Record or one Rejection. Row numbers are 1-based:
//
//   - CSV: the physical line number in the file, counting the header as
//     line 1 (blank lines still count, so the number matches an editor's).
//   - PSKC: the 1-based index of the KeyPackage element in the container.
//
// # CSV
//
// The first non-blank line is a header. Column names are matched
// case-insensitively and may come in any order:
//
//	serial      required; exactly 12 ASCII digits
//	kind        software | hardware          (default software)
//	digits      6 | 8                        (default 8)
//	interval    30 | 60 seconds              (default 60)
//	expires_at  RFC 3339 or YYYY-MM-DD       (default none: zero time)
//
// A date without a time means 00:00:00 UTC of that day. An unknown or
// repeated column fails the whole file. Fields are comma-separated; a field
// may be quoted with double quotes ("" inside a quoted field is a quote), but
// a field cannot span lines, so one broken row can never swallow the rows
// after it. Lines that are empty, blank or made only of empty fields (as
// spreadsheets write them) are skipped. A UTF-8 byte order mark is ignored.
// A serial repeated within the file is rejected on every row after the first,
// whatever became of the first. CSV rows carry no seed: Record.Seed is nil
// and Record.Algorithm is AlgSecurID.
//
// # PSKC
//
// Only RFC 6030 containers (namespace urn:ietf:params:xml:ns:keyprov:pskc,
// Version 1.0) are read. Files larger than DefaultMaxPSKCSize (64 MiB) and
// files with a document type declaration (DTD, entity declarations) are
// refused before any key is looked at.
//
// Encryption: AES-CBC (xmlenc aes128-cbc, aes192-cbc, aes256-cbc; the IV is
// the first block of the cipher value) under either a pre-shared key
// (PSKCOptions.Key) or a key derived with PBKDF2 (pkcs5:PBKDF2-params; PRF
// HMAC-SHA1 by default, HMAC-SHA-224/256/384/512 accepted) from
// PSKCOptions.Password. Encrypted files must carry a MACMethod with an
// encrypted MACKey (HMAC-SHA1, or HMAC-SHA-224/256/384/512) and a ValueMAC for
// every encrypted value, computed over IV and ciphertext, as RFC 6030 section
// 6.1.1 requires for CBC. Encrypted integers (Counter, Time, ...) are read
// as big-endian unsigned integers. Asymmetric key transport and AES key wrap
// are not supported (ErrUnsupported).
//
// Key algorithms:
//
//	urn:ietf:params:xml:ns:keyprov:pskc:hotp                                     AlgHOTP
//	urn:ietf:params:xml:ns:keyprov:pskc:totp                                     AlgTOTP
//	http://www.rsasecurity.com/rsalabs/otps/schemas/2005/09/otps-wst#SecurID-AES AlgSecurID
//	urn:ietf:params:xml:ns:keyprov:pskc#SecurID-AES                              AlgSecurID
//
// Anything else (PIN keys, OCRA, event-based SecurID) is a rejected row.
// Serial: KeyPackage/DeviceInfo/SerialNo, exactly 12 digits. Digits:
// AlgorithmParameters/ResponseFormat Length (DECIMAL encoding only; default 6
// for OATH, 8 for SecurID); must be 6 or 8. Hash (OATH only):
// AlgorithmParameters/Suite, e.g. HMAC-SHA256 (default sha1). Counter:
// Data/Counter (HOTP). Interval: Data/TimeInterval (default 30 for TOTP, 60
// for SecurID; must be 30 or 60; 0 for HOTP). Data/Time and Data/TimeDrift
// are passed through. Expiry: Key/Policy/ExpiryDate, else
// DeviceInfo/ExpiryDate. Secrets: 16 bytes for SecurID, 16 to 64 bytes for
// OATH (RFC 4226 asks for at least 128 bits).
//
// Secrets never appear in errors, rejection reasons, fmt output or slog
// output: Seed redacts itself and Record implements slog.LogValuer.
package tokenfile
