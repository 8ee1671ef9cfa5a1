package tokenfile

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// PIN modes a token record carries (Record.PINMode). The values match the
// appliance's (appliance.PINModeNone, ...).
const (
	PINModeNone   = "none"
	PINModePINPad = "pinpad"
	PINModeFob    = "fob"
)

// SDTIDOptions carries the file password and the defaults for what an RSA
// token record file does not say.
type SDTIDOptions struct {
	// Password opens a password-protected file. Without it the file key is
	// derived from the header's Origin, as RSA does for unprotected files.
	Password string
	// Kind of every record. Empty: software when the token's FormFactor is
	// absent or 20000001 (RSA's software token), hardware otherwise.
	Kind string
}

// softwareFormFactor is the FormFactor RSA and stoken give software tokens.
const softwareFormFactor = "20000001"

// Limits on one section (the header or one token): RSA's own MAC code hashes
// at most 64 KiB of a section, and real sections are well under 2 KiB.
const (
	maxSectionHash  = 65536
	maxSectionElems = 256
	maxSectionDepth = 4
)

// IVs of the RSA token file key schedule (stoken sdtid.c).
var (
	sdtidBatchMACIV = []byte{0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6, 0xab, 0xf7, 0x15, 0x88, 0x09, 0xcf, 0x4f, 0x3c}
	sdtidTokenMACIV = []byte{0x1b, 0xb6, 0x7a, 0xe8, 0x58, 0x4c, 0xaa, 0x73, 0xb2, 0x57, 0x42, 0xd7, 0x07, 0x8b, 0x83, 0xb8}
	sdtidTokenEncIV = []byte{0x16, 0xa0, 0x9e, 0x66, 0x7f, 0x3b, 0xcc, 0x90, 0x8b, 0x2f, 0xb1, 0x36, 0x6e, 0xa9, 0x57, 0xd3}
)

// ParseSDTID decodes a whole RSA token record file (<TKNBatch>, one or many
// <TKN>). Like DecodePSKC it returns every row or none.
func ParseSDTID(r io.Reader, opts SDTIDOptions) (*Result, error) {
	data, err := io.ReadAll(io.LimitReader(r, DefaultMaxPSKCSize+1))
	if err != nil {
		return nil, fmt.Errorf("tokenfile: reading token file: %w", err)
	}
	if len(data) > DefaultMaxPSKCSize {
		return nil, fmt.Errorf("%w: token file is over %d bytes", ErrTooLarge, DefaultMaxPSKCSize)
	}
	if err := StreamSDTID(bytes.NewReader(data), opts, Sink{}); err != nil {
		return nil, err
	}
	var c collector
	if err := StreamSDTID(bytes.NewReader(data), opts, c.sink()); err != nil {
		return nil, err
	}
	return c.result(), nil
}

// StreamSDTID decodes an RSA token record file one <TKN> at a time and
// passes each row to s as soon as it is decoded, in constant memory. Rows
// are numbered by the 1-based position of their <TKN>.
//
// The whole file fails (an error) when it is not a <TKNBatch>, when the
// header cannot be authenticated (ErrNeedKey: protected and no password;
// ErrWrongKey: the password does not open it; ErrMACMismatch: the header was
// altered), or on broken XML. A token whose own TokenMAC fails, or whose
// fields tokend cannot use, is a rejected row naming its serial. As with
// StreamPSKC, a whole-file error may come after rows were passed on: run it
// once with an empty Sink first to see every row or none.
func StreamSDTID(r io.Reader, opts SDTIDOptions, s Sink) error {
	if err := checkKind("SDTIDOptions", opts.Kind); err != nil {
		return err
	}
	d := xml.NewTokenDecoder(noDTD{xml.NewDecoder(r)})
	if err := sdtidRoot(d); err != nil {
		return err
	}
	var (
		hdr  *xnode
		keys *sdtidKeys
		n    int
		seen = make(map[string]int)
	)
	defer func() {
		if keys != nil {
			keys.wipe()
		}
	}()
	for done := false; !done; {
		t, err := d.Token()
		if err != nil {
			if err == io.EOF {
				return fmt.Errorf("%w: the document ends inside <TKNBatch>", ErrMalformed)
			}
			return xmlErr(err)
		}
		switch t := t.(type) {
		case xml.EndElement:
			done = true
		case xml.StartElement:
			switch t.Name.Local {
			case "TKNHeader":
				if hdr != nil {
					return fmt.Errorf("%w: more than one <TKNHeader>", ErrMalformed)
				}
				if hdr, err = readSection(d, t); err != nil {
					return err
				}
				if keys, err = newSDTIDKeys(hdr, opts.Password); err != nil {
					return err
				}
			case "TKN":
				if hdr == nil {
					return fmt.Errorf("%w: <TKN> before <TKNHeader>", ErrMalformed)
				}
				tkn, err := readSection(d, t)
				if err != nil {
					return err
				}
				n++
				if err := keys.row(hdr, tkn, n, opts, seen, s); err != nil {
					return err
				}
			default:
				// TKNTrailer (the batch signature, which RSA's own
				// importers ignore too) and anything unknown.
				if err := d.Skip(); err != nil {
					return xmlErr(err)
				}
			}
		}
	}
	if err := xmlEnd(d); err != nil {
		return err
	}
	if hdr == nil {
		return fmt.Errorf("%w: no <TKNHeader>", ErrMalformed)
	}
	if n == 0 {
		if !keys.headerOK {
			return keys.headerFailure("")
		}
		return fmt.Errorf("%w: no <TKN>", ErrMalformed)
	}
	return nil
}

func sdtidRoot(d *xml.Decoder) error {
	for {
		t, err := d.Token()
		if err != nil {
			return xmlErr(err)
		}
		if se, ok := t.(xml.StartElement); ok {
			if se.Name.Local != "TKNBatch" {
				return fmt.Errorf("%w: root is not <TKNBatch>", ErrMalformed)
			}
			return nil
		}
	}
}

// xmlEnd allows only comments, processing instructions and white space
// after the root.
func xmlEnd(d *xml.Decoder) error {
	for {
		t, err := d.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return xmlErr(err)
		}
		switch t := t.(type) {
		case xml.StartElement:
			return fmt.Errorf("%w: content after the root element", ErrMalformed)
		case xml.CharData:
			if len(bytes.TrimSpace(t)) != 0 {
				return fmt.Errorf("%w: content after the root element", ErrMalformed)
			}
		}
	}
}

// xnode is one element of a section: its local name, its text, and its
// element children in document order.
type xnode struct {
	name string
	text []byte
	kids []*xnode
}

// readSection reads the element started by se into a tree, bounded in
// depth, element count and text size.
func readSection(d *xml.Decoder, se xml.StartElement) (*xnode, error) {
	elems, size := 0, 0
	var read func(se xml.StartElement, depth int) (*xnode, error)
	read = func(se xml.StartElement, depth int) (*xnode, error) {
		if depth > maxSectionDepth {
			return nil, fmt.Errorf("%w: <%s> nested too deep", ErrMalformed, se.Name.Local)
		}
		if elems++; elems > maxSectionElems {
			return nil, fmt.Errorf("%w: a section has over %d elements", ErrMalformed, maxSectionElems)
		}
		n := &xnode{name: se.Name.Local}
		for {
			t, err := d.Token()
			if err != nil {
				if err == io.EOF {
					return nil, fmt.Errorf("%w: the document ends inside <%s>", ErrMalformed, se.Name.Local)
				}
				return nil, xmlErr(err)
			}
			switch t := t.(type) {
			case xml.StartElement:
				k, err := read(t, depth+1)
				if err != nil {
					return nil, err
				}
				n.kids = append(n.kids, k)
			case xml.CharData:
				if size += len(t) + len(se.Name.Local); size > maxSectionHash {
					return nil, fmt.Errorf("%w: a section is over %d bytes", ErrMalformed, maxSectionHash)
				}
				n.text = append(n.text, t...)
			case xml.EndElement:
				return n, nil
			}
		}
	}
	return read(se, 0)
}

// child finds the first element called name below n, searching each
// child's descendants before the child itself, as RSA's reader does.
func (n *xnode) find(name string) *xnode {
	if n == nil {
		return nil
	}
	for _, k := range n.kids {
		if f := k.find(name); f != nil {
			return f
		}
		if k.name == name {
			return k
		}
	}
	return nil
}

// content is the element's text, as libxml2's xmlNodeGetContent gives it:
// the text of the element and of all its descendants.
func (n *xnode) content() []byte {
	if len(n.kids) == 0 {
		return n.text
	}
	var b []byte
	var walk func(*xnode)
	walk = func(x *xnode) {
		b = append(b, x.text...)
		for _, k := range x.kids {
			walk(k)
		}
	}
	walk(n)
	return b
}

// lookup finds a token attribute: in the token, else Def<name> in the
// header, else <name> in the header.
func lookup(hdr, tkn *xnode, name string) (string, bool) {
	for _, f := range [...]*xnode{tkn.find(name), hdr.find("Def" + name), hdr.find(name)} {
		if f != nil {
			return string(f.content()), true
		}
	}
	return "", false
}

// sectionHash is RSA's canonical serialisation of a section for its MAC:
// "<Section>.<Elem>[.<Child>] <value>\n" for every leaf, *MAC elements left
// out, with RSA's odd padding rules kept exactly (stoken's "bug
// compatibility"), since the MACs in real files depend on them.
func sectionHash(sec *xnode) ([]byte, error) {
	data := make([]byte, 0, 1024)
	pos, padding := 0, 0
	// put writes s at p, growing data with zeros as needed.
	put := func(p int, s []byte) {
		if need := p + len(s); need > len(data) {
			data = append(data, make([]byte, need-len(data))...)
		}
		copy(data[p:], s)
	}
	var walk func(pfx string, n *xnode) error
	walk = func(pfx string, n *xnode) error {
		for _, k := range n.kids {
			if len(k.name) > 3 && strings.HasSuffix(k.name, "MAC") {
				continue
			}
			long := pfx + "." + k.name
			if len(k.kids) > 0 {
				if err := walk(long, k); err != nil {
					return err
				}
				continue
			}
			remain := maxSectionHash - pos
			val := k.content()
			var line []byte
			if len(val) == 0 {
				line = fmt.Appendf(nil, "%s </%s>\n", long, k.name)
			} else {
				line = fmt.Appendf(nil, "%s %s\n", long, val)
			}
			if i := bytes.IndexByte(line, 0); i >= 0 {
				line = line[:i] // C strings end at the first NUL
			}
			bytes := len(line)
			if bytes >= remain {
				return fmt.Errorf("%w: a section is over %d bytes", ErrMalformed, maxSectionHash)
			}
			if len(val) != 0 && bytes+padding <= 16 && bytes+padding < remain {
				pos &^= 0xf
			}
			put(pos, line)
			put(pos+bytes, make([]byte, padding))
			pos += bytes + padding
			if padding = pos & 0xf; padding == 0 {
				padding = 0x10
			}
		}
		return nil
	}
	if err := walk(sec.name, sec); err != nil {
		return nil, err
	}
	if pos > len(data) {
		data = append(data, make([]byte, pos-len(data))...)
	}
	return data[:pos], nil
}

// cbcMAC is RSA's CBC-MAC: AES-128 over data zero-padded to whole blocks,
// from iv.
func cbcMAC(key, iv, data []byte) []byte {
	b, err := aes.NewCipher(key)
	if err != nil {
		panic(err) // key is always 16 bytes here
	}
	return cbcMACBlock(b, iv, data)
}

func cbcMACBlock(b cipher.Block, iv, data []byte) []byte {
	out := make([]byte, aes.BlockSize)
	copy(out, iv)
	for len(data) > 0 {
		n := min(len(data), aes.BlockSize)
		subtle.XORBytes(out[:n], out[:n], data[:n])
		b.Encrypt(out, out)
		data = data[n:]
	}
	return out
}

// cstr copies s into dst as C's strncpy would: up to the first NUL or
// len(dst) bytes, the rest of dst zero.
func cstr(dst []byte, s string) {
	if i := strings.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	clear(dst)
	copy(dst, s)
}

// sdtidFileKey derives the file key from the password (or Origin) with Dest
// and Name as salts: 1,000 CBC-MACs, the same work RSA's tools do.
func sdtidFileKey(pass, dest, name string) []byte {
	key := make([]byte, 16)
	cstr(key, name)
	b, _ := aes.NewCipher(key)
	data := make([]byte, 0x50)
	cstr(data[:0x20], pass)
	cstr(data[0x20:0x40], dest)
	result := make([]byte, 16)
	zero := make([]byte, 16)
	for i := 0; i < 1000; i++ {
		data[0x4f], data[0x4e] = byte(i), byte(i>>8)
		subtle.XORBytes(result, result, cbcMACBlock(b, zero, data))
	}
	clear(data)
	return result
}

// ecbLabel encrypts the 16-byte block a (8 bytes) || b (8 bytes) with key
// and XORs it with in: how RSA wraps the batch secret and each seed.
func ecbLabel(key []byte, a, b string, in []byte) []byte {
	blk := make([]byte, 16)
	cstr(blk[:8], a)
	cstr(blk[8:], b)
	c, _ := aes.NewCipher(key)
	c.Encrypt(blk, blk)
	subtle.XORBytes(blk, blk, in)
	return blk
}

// calcKey derives a subkey: CBC-MAC of label (32 bytes) || salt (32 bytes).
func calcKey(label, salt string, key, iv []byte) []byte {
	buf := make([]byte, 0x40)
	cstr(buf[:0x20], label)
	cstr(buf[0x20:], salt)
	return cbcMAC(key, iv, buf)
}

// sdtidKeys is the key schedule of one file.
type sdtidKeys struct {
	batch    []byte // the decrypted batch secret
	password bool   // the key came from a password
	headerOK bool   // HeaderMAC held
	checked  bool   // the header failure was resolved with the first token
	header   []string
}

func (k *sdtidKeys) wipe() { clear(k.batch) }

// headerValue returns a header field trimmed of white space, as RSA's
// reader does.
func headerValue(hdr *xnode, name string) (string, bool) {
	f := hdr.find("Def" + name)
	if f == nil {
		if f = hdr.find(name); f == nil {
			return "", false
		}
	}
	return strings.TrimSpace(string(f.content())), true
}

func newSDTIDKeys(hdr *xnode, password string) (*sdtidKeys, error) {
	var v [3]string
	for i, name := range [...]string{"Origin", "Dest", "Name"} {
		s, ok := headerValue(hdr, name)
		if !ok {
			return nil, fmt.Errorf("%w: <TKNHeader> has no <%s>", ErrMalformed, name)
		}
		v[i] = s
	}
	origin, dest, name := v[0], v[1], v[2]
	sec := hdr.find("Secret")
	if sec == nil {
		return nil, fmt.Errorf("%w: <TKNHeader> has no <Secret>", ErrMalformed)
	}
	secret, err := b64(string(sec.content()))
	if err != nil || len(secret) != 16 {
		return nil, fmt.Errorf("%w: <Secret> is not 16 bytes of base64", ErrMalformed)
	}
	hm := hdr.find("HeaderMAC")
	if hm == nil {
		return nil, fmt.Errorf("%w: <TKNHeader> has no <HeaderMAC>", ErrMACMissing)
	}
	want, err := b64(string(hm.content()))
	if err != nil || len(want) != 16 {
		return nil, fmt.Errorf("%w: <HeaderMAC> is not 16 bytes of base64", ErrMalformed)
	}
	data, err := sectionHash(hdr)
	if err != nil {
		return nil, err
	}
	try := func(pass string) *sdtidKeys {
		k0 := sdtidFileKey(pass, dest, name)
		k := &sdtidKeys{batch: ecbLabel(k0, "Secret", name, secret)}
		clear(k0)
		mac := cbcMAC(calcKey("BatchMAC", name, k.batch, sdtidBatchMACIV), sdtidBatchMACIV, data)
		k.headerOK = subtle.ConstantTimeCompare(mac, want) == 1
		return k
	}
	if password == "" {
		return try(origin), nil
	}
	k := try(password)
	k.password = true
	if !k.headerOK {
		// A password sent with a file that has none is a mistake worth
		// naming, not a wrong password.
		if plain := try(origin); plain.headerOK {
			plain.wipe()
			k.wipe()
			return nil, fmt.Errorf("%w: the file is not protected by a password; send it without one", ErrWrongKey)
		}
	}
	return k, nil
}

// headerFailure is the whole-file error when HeaderMAC fails: which of a
// missing or wrong password, or an altered header, tokenOK (the first
// token's MAC under the same keys) tells apart.
func (k *sdtidKeys) headerFailure(serial string) error {
	if serial != "" {
		return fmt.Errorf("%w: header MAC mismatch: the <TKNHeader> was altered (the token MAC of serial %s holds); nothing was imported", ErrMACMismatch, serial)
	}
	if k.password {
		return fmt.Errorf("%w: wrong password (the header MAC and the first token MAC both fail); nothing was imported", ErrWrongKey)
	}
	return fmt.Errorf("%w: the file is protected by a password (or was altered): the header MAC fails without one; nothing was imported", ErrNeedKey)
}

// row decodes one <TKN>. A failing header is resolved here, at the first
// token: if its MAC holds the keys are right and the header was altered;
// if not, the password is missing or wrong.
func (k *sdtidKeys) row(hdr, tkn *xnode, n int, opts SDTIDOptions, seen map[string]int, s Sink) error {
	snNode := tkn.find("SN")
	sn := ""
	if snNode != nil {
		sn = strings.TrimSpace(string(snNode.content()))
	}
	var macOK bool
	var encKey []byte
	if sn != "" {
		macOK = k.tokenMAC(tkn, sn)
		encKey = calcKey("TokenEncrypt", sn, k.batch, sdtidTokenEncIV)
		defer clear(encKey)
	}
	if !k.headerOK {
		if n == 1 && macOK {
			return k.headerFailure(quote(sn))
		}
		return k.headerFailure("")
	}
	rec, reason := sdtidRecord(hdr, tkn, sn, n, opts)
	if sn != "" && !macOK {
		// Checked first: nothing else of an altered record is trusted.
		rec, reason = Record{Row: n}, fmt.Sprintf("token MAC mismatch for serial %s (token %d): the token record was altered or belongs to another file", quote(sn), n)
	}
	if reason == "" {
		for _, f := range [...]string{"Origin", "Dest", "Name", "Secret"} {
			if tkn.find(f) != nil {
				reason = fmt.Sprintf("token %d (serial %s) overrides the header's <%s>, which is not supported", n, quote(sn), f)
				break
			}
		}
	}
	if reason == "" {
		enc, err := seedBytes(tkn)
		if err != nil {
			reason = fmt.Sprintf("serial %s: <Seed> is missing or not 16 bytes of base64", quote(sn))
		} else {
			rec.Seed = ecbLabel(encKey, sn, "Seed", enc)
		}
	}
	return s.emit(rec, reason, n, seen, "TKN")
}

func (k *sdtidKeys) tokenMAC(tkn *xnode, sn string) bool {
	tm := tkn.find("TokenMAC")
	if tm == nil {
		return false
	}
	want, err := b64(string(tm.content()))
	if err != nil || len(want) != 16 {
		return false
	}
	data, err := sectionHash(tkn)
	if err != nil {
		return false
	}
	mac := cbcMAC(calcKey("TokenMAC", sn, k.batch, sdtidTokenMACIV), sdtidTokenMACIV, data)
	return subtle.ConstantTimeCompare(mac, want) == 1
}

// seedBytes reads <Seed>: base64 after one leading character RSA's writers
// put there ("=") and its readers skip.
func seedBytes(tkn *xnode) ([]byte, error) {
	f := tkn.find("Seed")
	if f == nil {
		return nil, errors.New("no seed")
	}
	s := string(f.content())
	if s == "" {
		return nil, errors.New("empty seed")
	}
	b, err := b64(s[1:])
	if err != nil || len(b) != 16 {
		return nil, errors.New("bad seed")
	}
	return b, nil
}

// sdtidRecord reads the token's attributes (the seed is added by the
// caller) or says why the token cannot be used.
func sdtidRecord(hdr, tkn *xnode, sn string, n int, opts SDTIDOptions) (Record, string) {
	rec := Record{Row: n, Algorithm: AlgSecurID}
	if sn == "" {
		return rec, "no <SN>"
	}
	if len(sn) > 12 || strings.Trim(sn, "0123456789") != "" {
		return rec, fmt.Sprintf("serial %s is not 1 to 12 digits", quote(sn))
	}
	// Hardware token files leave out the leading zeros.
	rec.Serial = strings.Repeat("0", 12-len(sn)) + sn
	num := func(name string, def int) (int, string) {
		v, ok := lookup(hdr, tkn, name)
		if !ok {
			return def, ""
		}
		i, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return 0, fmt.Sprintf("serial %s: %s %s is not a number", rec.Serial, name, quote(v))
		}
		return i, ""
	}
	var reason string
	if rec.Digits, reason = num("Digits", 6); reason != "" {
		return rec, reason
	}
	if rec.Digits != 6 && rec.Digits != 8 {
		return rec, fmt.Sprintf("serial %s: %d digits (want 6 or 8)", rec.Serial, rec.Digits)
	}
	if rec.Interval, reason = num("Interval", 60); reason != "" {
		return rec, reason
	}
	if rec.Interval != 30 && rec.Interval != 60 {
		return rec, fmt.Sprintf("serial %s: interval %d s (want 30 or 60)", rec.Serial, rec.Interval)
	}
	alg, reason := num("Alg", 1)
	if reason != "" {
		return rec, reason
	}
	if alg == 0 {
		return rec, fmt.Sprintf("serial %s: a 64-bit (pre-AES) SecurID token, which tokend does not support", rec.Serial)
	}
	addPIN, reason := num("AddPIN", 0)
	if reason != "" {
		return rec, reason
	}
	localPIN, reason := num("LocalPIN", 0)
	if reason != "" {
		return rec, reason
	}
	switch {
	case addPIN != 0:
		rec.PINMode = PINModePINPad // the app folds the PIN into the code
	case localPIN != 0:
		rec.PINMode = PINModeNone // the app checks the PIN; the server gets the bare code
	default:
		rec.PINMode = PINModeFob // the user types PIN then code
	}
	death, ok := lookup(hdr, tkn, "Death")
	if !ok {
		return rec, fmt.Sprintf("serial %s: no Death (expiry) date", rec.Serial)
	}
	d, ok := parseSlashDate(strings.TrimSpace(death))
	if !ok {
		return rec, fmt.Sprintf("serial %s: Death %s is not YYYY/MM/DD", rec.Serial, quote(death))
	}
	// The token works through its Death day (stoken: expiry is the next
	// midnight).
	rec.ExpiresAt = d.Add(24 * time.Hour)
	rec.Kind = opts.Kind
	if rec.Kind == "" {
		rec.Kind = KindSoftware
		if ff, ok := lookup(hdr, tkn, "FormFactor"); ok && strings.TrimSpace(ff) != softwareFormFactor && strings.TrimSpace(ff) != "" {
			rec.Kind = KindHardware
		}
	}
	return rec, ""
}

// parseSlashDate parses YYYY/MM/DD.
func parseSlashDate(s string) (time.Time, bool) {
	return parseDate(strings.ReplaceAll(s, "/", "-"))
}
