package tokenfile

import (
	"bytes"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
)

// DefaultMaxPSKCSize is the largest PSKC file read unless PSKCOptions.MaxSize
// says otherwise: about 100,000 encrypted keys, far beyond any vendor batch.
const DefaultMaxPSKCSize = 64 << 20

// PSKC namespace and algorithm URIs.
const (
	pskcNS = "urn:ietf:params:xml:ns:keyprov:pskc"

	uriHOTP      = "urn:ietf:params:xml:ns:keyprov:pskc:hotp"
	uriTOTP      = "urn:ietf:params:xml:ns:keyprov:pskc:totp"
	uriSecurIDWS = "http://www.rsasecurity.com/rsalabs/otps/schemas/2005/09/otps-wst#SecurID-AES"
	uriSecurID   = "urn:ietf:params:xml:ns:keyprov:pskc#SecurID-AES"
)

// PSKCOptions carries the secrets for encrypted containers and the defaults
// for what a PSKC file does not say.
type PSKCOptions struct {
	// Key is the pre-shared key for containers whose EncryptionKey is a
	// ds:KeyName (16 bytes for aes128-cbc).
	Key []byte
	// Password derives the key for containers whose EncryptionKey is an
	// xenc11:DerivedKey with PBKDF2.
	Password string
	// Kind of every record; default KindHardware, since vendor PSKC files
	// usually ship with physical tokens.
	Kind string
	// MaxSize bounds the file in bytes; 0 means DefaultMaxPSKCSize.
	MaxSize int64
}

// ParsePSKC decodes a whole PSKC key container.
func ParsePSKC(r io.Reader, opts PSKCOptions) (*Result, error) {
	var c collector
	if err := DecodePSKC(r, opts, c.sink()); err != nil {
		return nil, err
	}
	return c.result(), nil
}

// DecodePSKC decodes a PSKC key container and passes its rows to s in file
// order. Because a wrong key or one bad MAC must reject the whole file, the
// file is read and checked completely before the first row reaches s: s sees
// either every row or none.
//
// The container is decoded one KeyPackage at a time, twice: a first pass
// checks every key and MAC and keeps nothing, the second passes the rows on.
// When r is an io.ReadSeeker (a spooled upload) both passes read it from
// where it stands and memory stays flat whatever the file holds; any other
// reader is first read whole, up to the size limit.
func DecodePSKC(r io.Reader, opts PSKCOptions, s Sink) error {
	max := opts.MaxSize
	if max <= 0 {
		max = DefaultMaxPSKCSize
	}
	if err := checkKind("PSKCOptions", opts.Kind); err != nil {
		return err
	}
	rs, ok := r.(io.ReadSeeker)
	if !ok {
		data, err := io.ReadAll(io.LimitReader(r, max+1))
		if err != nil {
			return fmt.Errorf("tokenfile: reading PSKC: %w", err)
		}
		rs = bytes.NewReader(data)
	}
	start, err := rs.Seek(0, io.SeekCurrent)
	if err != nil {
		return fmt.Errorf("tokenfile: reading PSKC: %w", err)
	}
	end, err := rs.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Errorf("tokenfile: reading PSKC: %w", err)
	}
	if end-start > max {
		return fmt.Errorf("%w: PSKC file is over %d bytes", ErrTooLarge, max)
	}
	for _, sink := range [...]Sink{{}, s} {
		if _, err := rs.Seek(start, io.SeekStart); err != nil {
			return fmt.Errorf("tokenfile: reading PSKC: %w", err)
		}
		if err := streamPSKC(io.LimitReader(rs, end-start), opts, sink); err != nil {
			return err
		}
	}
	return nil
}

// StreamPSKC decodes a container one KeyPackage at a time and passes each
// row to s as soon as it is decoded, in constant memory. Unlike DecodePSKC,
// an error that rejects the whole file (a wrong key, a bad MAC, a broken
// document) may come after rows were passed: a caller that must see every
// row or none runs it once with an empty Sink first, over the same bytes.
// opts.MaxSize is not applied; bound r instead.
func StreamPSKC(r io.Reader, opts PSKCOptions, s Sink) error {
	if err := checkKind("PSKCOptions", opts.Kind); err != nil {
		return err
	}
	return streamPSKC(r, opts, s)
}

func streamPSKC(r io.Reader, opts PSKCOptions, s Sink) error {
	kind := opts.Kind
	if kind == "" {
		kind = KindHardware
	}
	d := xml.NewTokenDecoder(noDTD{xml.NewDecoder(r)})
	var c xContainer
	if err := pskcRoot(d, &c); err != nil {
		return err
	}
	var cc *pskcCrypto
	defer func() {
		if cc != nil {
			cc.wipe()
		}
	}()
	seen := make(map[string]int)
	n := 0
	for done := false; !done; {
		t, err := d.Token()
		if err != nil {
			if err == io.EOF {
				return fmt.Errorf("%w: the document ends inside the root element", ErrMalformed)
			}
			return xmlErr(err)
		}
		switch t := t.(type) {
		case xml.EndElement:
			done = true // the decoder checks that it closes the root
		case xml.StartElement:
			switch t.Name.Local {
			case "EncryptionKey", "MACMethod":
				// RFC 6030 puts them before the first KeyPackage; later
				// they would change how packages already read are opened.
				if n > 0 {
					return fmt.Errorf("%w: %s after a KeyPackage", ErrMalformed, t.Name.Local)
				}
				dst := any(&c.EncryptionKey)
				if t.Name.Local == "MACMethod" {
					dst = &c.MACMethod
				}
				if err := d.DecodeElement(dst, &t); err != nil {
					return xmlErr(err)
				}
			case "KeyPackage":
				var kp xKeyPackage
				if err := d.DecodeElement(&kp, &t); err != nil {
					return xmlErr(err)
				}
				n++
				// The crypto is set up at the first package, and again at
				// the first encrypted one if the earlier ones were plain:
				// whether a file is encrypted shows in its packages.
				if cc == nil || (cc.mac == nil && packageEncrypted(&kp)) {
					if cc != nil {
						cc.wipe()
					}
					cc = nil
					one := xContainer{EncryptionKey: c.EncryptionKey, MACMethod: c.MACMethod, KeyPackages: []xKeyPackage{kp}}
					if cc, err = newCrypto(&one, opts); err != nil {
						return err
					}
				}
				if err := pskcRow(cc, &kp, n, kind, seen, s); err != nil {
					return err
				}
			default:
				if err := d.Skip(); err != nil {
					return xmlErr(err)
				}
			}
		}
	}
	if err := xmlEnd(d); err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("%w: no KeyPackage", ErrMalformed)
	}
	return nil
}

// pskcRow turns one KeyPackage into a record or a rejection and passes it
// to s. A record's seed is wiped here when s does not take it.
func pskcRow(cc *pskcCrypto, kp *xKeyPackage, n int, kind string, seen map[string]int, s Sink) error {
	rec, reason, err := cc.keyPackage(kp, n, kind)
	if err != nil {
		rec.Seed.Zero()
		return err
	}
	return s.emit(rec, reason, n, seen, "KeyPackage")
}

// pskcRoot reads up to the root element and checks it is an RFC 6030
// KeyContainer of a version this package reads.
func pskcRoot(d *xml.Decoder, c *xContainer) error {
	for {
		t, err := d.Token()
		if err != nil {
			return xmlErr(err)
		}
		se, ok := t.(xml.StartElement)
		if !ok {
			continue
		}
		if se.Name.Space != pskcNS || se.Name.Local != "KeyContainer" {
			return fmt.Errorf("%w: root is not an RFC 6030 KeyContainer", ErrMalformed)
		}
		c.XMLName = se.Name
		for _, a := range se.Attr {
			if a.Name.Local == "Version" {
				c.Version = a.Value
			}
		}
		if c.Version != "" && c.Version != "1.0" {
			return fmt.Errorf("%w: PSKC version %s", ErrUnsupported, quote(c.Version))
		}
		return nil
	}
}

// packageEncrypted reports whether any value of kp is encrypted.
func packageEncrypted(kp *xKeyPackage) bool {
	one := xContainer{KeyPackages: []xKeyPackage{*kp}}
	return encrypted(&one)
}

// XML shapes. Names are matched on their local part; the root's namespace is
// checked once in decodeContainer.
type xContainer struct {
	XMLName       xml.Name
	Version       string          `xml:"Version,attr"`
	EncryptionKey *xEncryptionKey `xml:"EncryptionKey"`
	MACMethod     *xMACMethod     `xml:"MACMethod"`
	KeyPackages   []xKeyPackage   `xml:"KeyPackage"`
}

type xEncryptionKey struct {
	KeyName    *string      `xml:"KeyName"`
	DerivedKey *xDerivedKey `xml:"DerivedKey"`
}

type xDerivedKey struct {
	Method struct {
		Algorithm string   `xml:"Algorithm,attr"`
		Params    *xPBKDF2 `xml:"PBKDF2-params"`
	} `xml:"KeyDerivationMethod"`
}

type xPBKDF2 struct {
	Salt           string `xml:"Salt>Specified"`
	IterationCount string `xml:"IterationCount"`
	KeyLength      string `xml:"KeyLength"`
	PRF            *struct {
		Algorithm string `xml:"Algorithm,attr"`
	} `xml:"PRF"`
}

type xMACMethod struct {
	Algorithm string    `xml:"Algorithm,attr"`
	MACKey    *xEncData `xml:"MACKey"`
}

type xEncData struct {
	Method struct {
		Algorithm string `xml:"Algorithm,attr"`
	} `xml:"EncryptionMethod"`
	CipherValue string `xml:"CipherData>CipherValue"`
}

type xKeyPackage struct {
	DeviceInfo struct {
		SerialNo   string `xml:"SerialNo"`
		ExpiryDate string `xml:"ExpiryDate"`
	} `xml:"DeviceInfo"`
	Keys []xKey `xml:"Key"`
}

type xKey struct {
	Algorithm  string `xml:"Algorithm,attr"`
	Parameters struct {
		Suite          string `xml:"Suite"`
		ResponseFormat *struct {
			Length   string `xml:"Length,attr"`
			Encoding string `xml:"Encoding,attr"`
		} `xml:"ResponseFormat"`
	} `xml:"AlgorithmParameters"`
	Data struct {
		Secret       *xValue `xml:"Secret"`
		Counter      *xValue `xml:"Counter"`
		Time         *xValue `xml:"Time"`
		TimeInterval *xValue `xml:"TimeInterval"`
		TimeDrift    *xValue `xml:"TimeDrift"`
	} `xml:"Data"`
	Policy struct {
		ExpiryDate string `xml:"ExpiryDate"`
	} `xml:"Policy"`
}

type xValue struct {
	PlainValue     *string   `xml:"PlainValue"`
	EncryptedValue *xEncData `xml:"EncryptedValue"`
	ValueMAC       string    `xml:"ValueMAC"`
}

// noDTD hands raw tokens to the real decoder and refuses any directive
// (<!DOCTYPE ...>, and with it <!ENTITY ...>): encoding/xml would not expand
// them, but an import file has no business carrying them.
type noDTD struct{ d *xml.Decoder }

func (n noDTD) Token() (xml.Token, error) {
	t, err := n.d.RawToken()
	if _, ok := t.(xml.Directive); ok {
		return nil, ErrDTD
	}
	return t, err
}

func xmlErr(err error) error {
	if errors.Is(err, ErrDTD) {
		return err
	}
	if err == io.EOF {
		return fmt.Errorf("%w: empty document", ErrMalformed)
	}
	return fmt.Errorf("%w: %w", ErrMalformed, err)
}

// keyPackage turns one KeyPackage into a Record, or a rejection reason. A
// non-nil error rejects the whole file (integrity or key failures).
func (cc *pskcCrypto) keyPackage(kp *xKeyPackage, n int, kind string) (Record, string, error) {
	rec := Record{Row: n, Kind: kind}
	if len(kp.Keys) != 1 {
		return rec, fmt.Sprintf("KeyPackage has %d Key elements, want 1", len(kp.Keys)), nil
	}
	k := &kp.Keys[0]
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	// Integrity first: every encrypted value of the key is checked even if
	// the row is rejected for another reason, so tampering is never hidden.
	secret, reason, err := cc.open(k.Data.Secret)
	if err != nil {
		return rec, "", err
	}
	if reason != "" {
		bad("secret: %s", reason)
	}
	var counter, interval uint64
	var tm, drift int64
	var haveInterval bool
	for _, f := range [...]struct {
		name  string
		v     *xValue
		u     *uint64 // unsigned target, or
		s     *int64  // signed target
		isSet *bool
	}{
		{name: "Counter", v: k.Data.Counter, u: &counter},
		{name: "Time", v: k.Data.Time, s: &tm},
		{name: "TimeInterval", v: k.Data.TimeInterval, u: &interval, isSet: &haveInterval},
		{name: "TimeDrift", v: k.Data.TimeDrift, s: &drift},
	} {
		if f.v == nil {
			continue
		}
		u, sv, reason, err := cc.openNumber(f.v, f.s != nil)
		if err != nil {
			clear(secret)
			return rec, "", err
		}
		if reason != "" {
			bad("%s: %s", f.name, reason)
			continue
		}
		if f.u != nil {
			*f.u = u
		} else {
			*f.s = sv
		}
		if f.isSet != nil {
			*f.isSet = true
		}
	}

	rec.Serial = strings.TrimSpace(kp.DeviceInfo.SerialNo)
	switch {
	case rec.Serial == "":
		bad("no DeviceInfo/SerialNo")
	case !ValidSerial(rec.Serial):
		bad("serial %s is not 12 digits", quote(rec.Serial))
	}

	oath := true
	switch k.Algorithm {
	case uriHOTP:
		rec.Algorithm, rec.Digits = AlgHOTP, 6
	case uriTOTP:
		rec.Algorithm, rec.Digits, rec.Interval = AlgTOTP, 6, 30
	case uriSecurID, uriSecurIDWS:
		rec.Algorithm, rec.Digits, rec.Interval = AlgSecurID, 8, 60
		oath = false
	case "":
		bad("key has no Algorithm")
	default:
		bad("unsupported key algorithm %s", quote(k.Algorithm))
	}

	if rf := k.Parameters.ResponseFormat; rf != nil {
		if rf.Encoding != "" && rf.Encoding != "DECIMAL" {
			bad("response encoding %s is not DECIMAL", quote(rf.Encoding))
		}
		switch strings.TrimSpace(rf.Length) {
		case "6":
			rec.Digits = 6
		case "8":
			rec.Digits = 8
		default:
			bad("response length %s is not 6 or 8", quote(rf.Length))
		}
	}

	if oath {
		rec.Hash = HashSHA1
		if s := k.Parameters.Suite; s != "" {
			if h, ok := suiteHash(s); ok {
				rec.Hash = h
			} else {
				bad("unsupported suite %s", quote(s))
			}
		}
	}

	rec.Counter, rec.Time, rec.TimeDrift = counter, tm, drift
	if haveInterval && rec.Algorithm != AlgHOTP {
		switch interval {
		case 30, 60:
			rec.Interval = int(interval)
		default:
			bad("time interval %d is not 30 or 60", interval)
		}
	}

	exp := strings.TrimSpace(k.Policy.ExpiryDate)
	if exp == "" {
		exp = strings.TrimSpace(kp.DeviceInfo.ExpiryDate)
	}
	if exp != "" {
		t, ok := parseExpiry(exp)
		if !ok {
			bad("expiry date %s is not an xs:dateTime", quote(exp))
		}
		rec.ExpiresAt = t
	}

	switch {
	case k.Data.Secret == nil:
		bad("no secret")
	case reason != "":
	case rec.Algorithm == AlgSecurID && len(secret) != 16:
		bad("SecurID secret is %d bytes, want 16", len(secret))
	case oath && rec.Algorithm != "" && (len(secret) < 16 || len(secret) > 64):
		bad("OATH secret is %d bytes, want 16 to 64", len(secret))
	}

	if len(problems) > 0 {
		clear(secret)
		return Record{Row: n}, strings.Join(problems, "; "), nil
	}
	rec.Seed = secret
	return rec, "", nil
}

// suiteHash maps a Suite such as "HMAC-SHA256", "SHA-256" or "sha1" to a hash.
func suiteHash(s string) (string, bool) {
	s = strings.ToUpper(strings.TrimSpace(s))
	s = strings.TrimPrefix(s, "HMAC")
	s = strings.NewReplacer("-", "", "_", "", " ", "").Replace(s)
	switch s {
	case "SHA1":
		return HashSHA1, true
	case "SHA256":
		return HashSHA256, true
	case "SHA512":
		return HashSHA512, true
	}
	return "", false
}

// b64 decodes base64 that XML may have wrapped or indented.
func b64(s string) ([]byte, error) {
	s = strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\r', '\n':
			return -1
		}
		return r
	}, s)
	return base64.StdEncoding.DecodeString(s)
}
