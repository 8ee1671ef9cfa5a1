package tokenfile

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// RFC 6030 figure 6 pre-shared key and the secret of figures 3 to 10.
var (
	rfcKey    = unhex("12345678901234567890123456789012")
	rfcSecret = Seed("12345678901234567890")
)

func unhex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// edit applies old->new replacements, failing if an old string is absent.
func edit(t testing.TB, doc []byte, pairs ...string) []byte {
	t.Helper()
	s := string(doc)
	for i := 0; i < len(pairs); i += 2 {
		if !strings.Contains(s, pairs[i]) {
			t.Fatalf("edit: %q not in document", pairs[i])
		}
		s = strings.ReplaceAll(s, pairs[i], pairs[i+1])
	}
	return []byte(s)
}

func date(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }

func TestPSKCRFC6030(t *testing.T) {
	hotp := func(row int, serial string, exp time.Time) Record {
		return Record{Row: row, Serial: serial, Kind: KindHardware, Algorithm: AlgHOTP, Hash: HashSHA1,
			Digits: 8, ExpiresAt: exp, Seed: rfcSecret}
	}
	tests := []struct {
		name  string
		file  string
		edits []string
		opts  PSKCOptions
		want  Result
	}{
		{
			name: "figure 2 as published: no serial, 4-byte secret",
			file: "rfc6030-figure2.xml",
			want: Result{Rejections: []Rejection{{1, "no DeviceInfo/SerialNo; OATH secret is 4 bytes, want 16 to 64"}}},
		},
		{
			name: "figure 6 as published: 9-digit serial",
			file: "rfc6030-figure6.xml",
			opts: PSKCOptions{Key: rfcKey},
			want: Result{Rejections: []Rejection{{1, `serial "987654321" is not 12 digits`}}},
		},
		{
			name:  "figure 6 with a 12-digit serial",
			file:  "rfc6030-figure6.xml",
			edits: []string{"987654321", "000987654321"},
			opts:  PSKCOptions{Key: rfcKey},
			want:  Result{Records: []Record{hotp(1, "000987654321", time.Time{})}},
		},
		{
			name:  "figure 6 as software tokens",
			file:  "rfc6030-figure6.xml",
			edits: []string{"987654321", "000987654321"},
			opts:  PSKCOptions{Key: rfcKey, Kind: KindSoftware},
			want: Result{Records: []Record{func() Record {
				r := hotp(1, "000987654321", time.Time{})
				r.Kind = KindSoftware
				return r
			}()}},
		},
		{
			name:  "figure 7 with a 12-digit serial, password qwerty",
			file:  "rfc6030-figure7.xml",
			edits: []string{"987654321", "000987654321"},
			opts:  PSKCOptions{Password: "qwerty"},
			want:  Result{Records: []Record{hotp(1, "000987654321", time.Time{})}},
		},
		{
			name: "figure 10 as published: short serials",
			file: "rfc6030-figure10.xml",
			want: Result{Rejections: []Rejection{
				{1, `serial "654321" is not 12 digits`},
				{2, `serial "123456" is not 12 digits`},
				{3, `serial "9999999" is not 12 digits`},
				{4, `serial "9999999" is not 12 digits`},
			}},
		},
		{
			name:  "figure 10 with 12-digit serials: expiry dates, duplicate serial",
			file:  "rfc6030-figure10.xml",
			edits: []string{">654321<", ">000000654321<", ">123456<", ">000000123456<", ">9999999<", ">000009999999<"},
			want: Result{
				Records: []Record{
					hotp(1, "000000654321", date(2006, 5, 31)),
					hotp(2, "000000123456", date(2006, 5, 31)),
					hotp(3, "000009999999", date(2006, 3, 31)),
				},
				Rejections: []Rejection{{4, "duplicate serial 000009999999, first in KeyPackage 3"}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := readTestdata(t, tt.file)
			if len(tt.edits) > 0 {
				doc = edit(t, doc, tt.edits...)
			}
			got, err := ParsePSKC(bytes.NewReader(doc), tt.opts)
			if err != nil {
				t.Fatalf("ParsePSKC: %v", err)
			}
			if diff := cmp.Diff(&tt.want, got); diff != "" {
				t.Errorf("ParsePSKC (-want +got):\n%s", diff)
			}
		})
	}
}

// TestPSKCRFC6030Keys checks the intermediate values the RFC gives for
// figures 6 and 7, and the figure 2 secret that policy rejects.
func TestPSKCRFC6030Keys(t *testing.T) {
	tests := []struct {
		name       string
		file       string
		opts       PSKCOptions
		wantKey    string
		wantMACKey string
		wantSecret string
	}{
		{"figure 2", "rfc6030-figure2.xml", PSKCOptions{}, "", "", "31323334"},
		{"figure 6", "rfc6030-figure6.xml", PSKCOptions{Key: rfcKey}, "12345678901234567890123456789012",
			"1122334455667788990011223344556677889900", "3132333435363738393031323334353637383930"},
		{"figure 7", "rfc6030-figure7.xml", PSKCOptions{Password: "qwerty"}, "651e63cd57008476af1ff6422cd02e41",
			"bdaab8d648e850d25a3289364f7d7eaaf53ce581", "3132333435363738393031323334353637383930"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := decodeContainer(readTestdata(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			cc, err := newCrypto(c, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			secret, reason, err := cc.open(c.KeyPackages[0].Keys[0].Data.Secret)
			if err != nil || reason != "" {
				t.Fatalf("open secret: %q, %v", reason, err)
			}
			got := [3]string{hex.EncodeToString(cc.key), hex.EncodeToString(cc.macKey), hex.EncodeToString(secret)}
			want := [3]string{tt.wantKey, tt.wantMACKey, tt.wantSecret}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("key, MAC key, secret (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPSKCFileErrors(t *testing.T) {
	fig6 := readTestdata(t, "rfc6030-figure6.xml")
	fig7 := readTestdata(t, "rfc6030-figure7.xml")
	const dtd = `<?xml version="1.0"?>
<!DOCTYPE KeyContainer [<!ENTITY x "12345678901234567890">]>
<KeyContainer Version="1.0" xmlns="urn:ietf:params:xml:ns:keyprov:pskc"><KeyPackage/></KeyContainer>`
	tests := []struct {
		name string
		doc  []byte
		opts PSKCOptions
		want error
	}{
		{"pre-shared key needed", fig6, PSKCOptions{}, ErrNeedKey},
		{"password given, key needed", fig6, PSKCOptions{Password: "qwerty"}, ErrNeedKey},
		{"password needed", fig7, PSKCOptions{}, ErrNeedKey},
		{"key given, password needed", fig7, PSKCOptions{Key: rfcKey}, ErrNeedKey},
		{"wrong pre-shared key", fig6, PSKCOptions{Key: unhex("00000000000000000000000000000000")}, ErrWrongKey},
		{"pre-shared key too short", fig6, PSKCOptions{Key: rfcKey[:8]}, ErrWrongKey},
		{"wrong password", fig7, PSKCOptions{Password: "azerty"}, ErrWrongKey},
		{"tampered ValueMAC", edit(t, fig6, "Su+NvtQfmvfJzF6bmQiJqoLRExc=", "Su+NvtQgmvfJzF6bmQiJqoLRExc="), PSKCOptions{Key: rfcKey}, ErrMACMismatch},
		{"tampered ciphertext", edit(t, fig6, "AAECAwQFBgcICQoLDA0OD+cI", "AAECAwQFBgcICQoLDA0OD+cJ"), PSKCOptions{Key: rfcKey}, ErrMACMismatch},
		{"tampered IV", edit(t, fig6, "AAECAwQFBgcICQoLDA0OD+cI", "AAECAwQFBgcICQoLDA0PD+cI"), PSKCOptions{Key: rfcKey}, ErrMACMismatch},
		{"tampered ciphertext, figure 7", edit(t, fig7, "oTvo+S22", "oTvo+S23"), PSKCOptions{Password: "qwerty"}, ErrMACMismatch},
		{"ValueMAC removed", edit(t, fig6, "Su+NvtQfmvfJzF6bmQiJqoLRExc=", ""), PSKCOptions{Key: rfcKey}, ErrMACMissing},
		{"MACKey removed", edit(t, fig6, "<MACKey>", "<!--", "</MACKey>", "-->"), PSKCOptions{Key: rfcKey}, ErrMACMissing},
		{"MACMethod removed", edit(t, fig6, `<MACMethod Algorithm="http://www.w3.org/2000/09/xmldsig#hmac-sha1">`, "<!--", "</MACMethod>", "-->"), PSKCOptions{Key: rfcKey}, ErrMACMissing},
		{"unsupported MAC", edit(t, fig6, "xmldsig#hmac-sha1", "xmldsig#hmac-md5"), PSKCOptions{Key: rfcKey}, ErrUnsupported},
		{"unsupported encryption", edit(t, fig6, "xmlenc#aes128-cbc", "xmlenc#kw-aes128"), PSKCOptions{Key: rfcKey}, ErrUnsupported},
		{"unsupported KDF", edit(t, fig7, "pkcs-5v2-0#pbkdf2", "pkcs-5v2-0#scrypt"), PSKCOptions{Password: "qwerty"}, ErrUnsupported},
		{"unsupported PRF", edit(t, fig7, "<PRF/>", `<PRF Algorithm="http://www.rsasecurity.com/rsalabs/pkcs/schemas/pkcs-5v2-0#hmac-md5"/>`), PSKCOptions{Password: "qwerty"}, ErrUnsupported},
		{"PBKDF2 iterations out of bounds", edit(t, fig7, "<IterationCount>1000<", "<IterationCount>100000000<"), PSKCOptions{Password: "qwerty"}, ErrMalformed},
		{"PBKDF2 bad key length", edit(t, fig7, "<KeyLength>16<", "<KeyLength>17<"), PSKCOptions{Password: "qwerty"}, ErrMalformed},
		{"asymmetric key transport", edit(t, fig6, "<ds:KeyName>Pre-shared-key</ds:KeyName>", "<ds:X509Data/>"), PSKCOptions{Key: rfcKey}, ErrUnsupported},
		{"DTD with entity", []byte(dtd), PSKCOptions{}, ErrDTD},
		{"bare DOCTYPE", []byte(`<!DOCTYPE KeyContainer><KeyContainer/>`), PSKCOptions{}, ErrDTD},
		{"truncated XML", fig6[:len(fig6)/2], PSKCOptions{Key: rfcKey}, ErrMalformed},
		{"mismatched tags", []byte(`<KeyContainer xmlns="urn:ietf:params:xml:ns:keyprov:pskc"><KeyPackage></Key></KeyContainer>`), PSKCOptions{}, ErrMalformed},
		{"undefined entity", []byte(`<KeyContainer xmlns="urn:ietf:params:xml:ns:keyprov:pskc">&x;</KeyContainer>`), PSKCOptions{}, ErrMalformed},
		{"not XML", []byte("serial\n123456789012\n"), PSKCOptions{}, ErrMalformed},
		{"empty", nil, PSKCOptions{}, ErrMalformed},
		{"content after root", append(bytes.Clone(fig6), "<KeyContainer/>"...), PSKCOptions{Key: rfcKey}, ErrMalformed},
		{"wrong namespace", []byte(`<KeyContainer xmlns="urn:ietf:params:xml:ns:keyprov:pskc:1.0"><KeyPackage/></KeyContainer>`), PSKCOptions{}, ErrMalformed},
		{"no KeyPackage", []byte(`<KeyContainer Version="1.0" xmlns="urn:ietf:params:xml:ns:keyprov:pskc"/>`), PSKCOptions{}, ErrMalformed},
		{"version 2", edit(t, fig6, `Version="1.0"`, `Version="2.0"`), PSKCOptions{Key: rfcKey}, ErrUnsupported},
		{"over the size limit", fig6, PSKCOptions{Key: rfcKey, MaxSize: 1024}, ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rows int
			sink := Sink{
				Record: func(Record) error { rows++; return nil },
				Reject: func(Rejection) error { rows++; return nil },
			}
			err := DecodePSKC(bytes.NewReader(tt.doc), tt.opts, sink)
			if !errors.Is(err, tt.want) {
				t.Fatalf("DecodePSKC error = %v, want %v", err, tt.want)
			}
			if rows != 0 {
				t.Errorf("%d rows reached the sink of a rejected file", rows)
			}
			msg := strings.ToLower(err.Error())
			for _, secret := range []string{"qwerty", "azerty", "1234567890123456", "3132333435", "651e63cd", "1122334455", "bdaab8d6"} {
				if strings.Contains(msg, secret) {
					t.Errorf("error %q contains secret material %q", msg, secret)
				}
			}
		})
	}
}

// testKey describes one KeyPackage for pskcDoc.
type testKey struct {
	serial    string // "" for no DeviceInfo
	devExpiry string
	alg       string
	suite     string
	length    string // ResponseFormat Length; "" for none
	encoding  string
	secret    []byte // nil for no Secret
	counter   string // plain Counter; "" for none
	encCount  *uint64
	time      string
	interval  string
	drift     string
	expiry    string
	extraKey  bool // a second Key element
}

// pskcDoc builds a container. With key non-nil, secrets (and encCount) are
// encrypted with AES-128-CBC under key and MACed with macKey (HMAC-SHA1).
func pskcDoc(key, macKey []byte, keys ...testKey) []byte {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>
<KeyContainer Version="1.0" xmlns="urn:ietf:params:xml:ns:keyprov:pskc"
  xmlns:ds="http://www.w3.org/2000/09/xmldsig#" xmlns:xenc="http://www.w3.org/2001/04/xmlenc#">
`)
	enc := func(pt []byte) string {
		return fmt.Sprintf(`<xenc:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#aes128-cbc"/>
<xenc:CipherData><xenc:CipherValue>%s</xenc:CipherValue></xenc:CipherData>`, base64.StdEncoding.EncodeToString(cbcEncrypt(key, pt)))
	}
	encValue := func(pt []byte) string {
		ct := cbcEncrypt(key, pt)
		m := hmac.New(sha1.New, macKey)
		m.Write(ct)
		return fmt.Sprintf(`<EncryptedValue><xenc:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#aes128-cbc"/>
<xenc:CipherData><xenc:CipherValue>%s</xenc:CipherValue></xenc:CipherData></EncryptedValue>
<ValueMAC>%s</ValueMAC>`, base64.StdEncoding.EncodeToString(ct), base64.StdEncoding.EncodeToString(m.Sum(nil)))
	}
	if key != nil {
		fmt.Fprintf(&b, `<EncryptionKey><ds:KeyName>PSK</ds:KeyName></EncryptionKey>
<MACMethod Algorithm="http://www.w3.org/2000/09/xmldsig#hmac-sha1"><MACKey>%s</MACKey></MACMethod>
`, enc(macKey))
	}
	for _, k := range keys {
		b.WriteString("<KeyPackage>\n")
		if k.serial != "" || k.devExpiry != "" {
			b.WriteString("<DeviceInfo>")
			if k.serial != "" {
				fmt.Fprintf(&b, "<SerialNo>%s</SerialNo>", k.serial)
			}
			if k.devExpiry != "" {
				fmt.Fprintf(&b, "<ExpiryDate>%s</ExpiryDate>", k.devExpiry)
			}
			b.WriteString("</DeviceInfo>\n")
		}
		fmt.Fprintf(&b, "<Key Id=\"k\" Algorithm=%q>\n<AlgorithmParameters>", k.alg)
		if k.suite != "" {
			fmt.Fprintf(&b, "<Suite>%s</Suite>", k.suite)
		}
		if k.length != "" {
			enc := k.encoding
			if enc == "" {
				enc = "DECIMAL"
			}
			fmt.Fprintf(&b, "<ResponseFormat Length=%q Encoding=%q/>", k.length, enc)
		}
		b.WriteString("</AlgorithmParameters>\n<Data>")
		if k.secret != nil {
			if key != nil {
				fmt.Fprintf(&b, "<Secret>%s</Secret>", encValue(k.secret))
			} else {
				fmt.Fprintf(&b, "<Secret><PlainValue>%s</PlainValue></Secret>", base64.StdEncoding.EncodeToString(k.secret))
			}
		}
		if k.encCount != nil {
			var n [8]byte
			binary.BigEndian.PutUint64(n[:], *k.encCount)
			fmt.Fprintf(&b, "<Counter>%s</Counter>", encValue(n[:]))
		}
		for _, f := range [...][2]string{{"Counter", k.counter}, {"Time", k.time}, {"TimeInterval", k.interval}, {"TimeDrift", k.drift}} {
			if f[1] != "" {
				fmt.Fprintf(&b, "<%s><PlainValue>%s</PlainValue></%[1]s>", f[0], f[1])
			}
		}
		b.WriteString("</Data>\n")
		if k.expiry != "" {
			fmt.Fprintf(&b, "<Policy><StartDate>2020-01-01T00:00:00Z</StartDate><ExpiryDate>%s</ExpiryDate></Policy>\n", k.expiry)
		}
		b.WriteString("</Key>\n")
		if k.extraKey {
			fmt.Fprintf(&b, "<Key Algorithm=%q/>\n", k.alg)
		}
		b.WriteString("</KeyPackage>\n")
	}
	b.WriteString("</KeyContainer>\n")
	return []byte(b.String())
}

// cbcEncrypt encrypts with a fixed IV (tests need no randomness) and
// PKCS#7 padding.
func cbcEncrypt(key, pt []byte) []byte {
	block, err := aes.NewCipher(key)
	if err != nil {
		panic(err)
	}
	pad := aes.BlockSize - len(pt)%aes.BlockSize
	buf := append(bytes.Clone(pt), bytes.Repeat([]byte{byte(pad)}, pad)...)
	out := make([]byte, aes.BlockSize+len(buf))
	copy(out, "fixed-test-iv-16")
	cipher.NewCBCEncrypter(block, out[:aes.BlockSize]).CryptBlocks(out[aes.BlockSize:], buf)
	return out
}

func TestPSKCKeys(t *testing.T) {
	const (
		hotp      = "urn:ietf:params:xml:ns:keyprov:pskc:hotp"
		totp      = "urn:ietf:params:xml:ns:keyprov:pskc:totp"
		securid   = "urn:ietf:params:xml:ns:keyprov:pskc#SecurID-AES"
		securidWS = "http://www.rsasecurity.com/rsalabs/otps/schemas/2005/09/otps-wst#SecurID-AES"
	)
	aes16 := []byte("0123456789abcdef")
	sha20 := []byte("0123456789abcdefghij")
	sha64 := bytes.Repeat([]byte("x"), 64)
	ten := uint64(10)
	tests := []struct {
		name string
		key  []byte // pre-shared key; nil for a plain file
		keys []testKey
		want Result
	}{
		{
			name: "SecurID, IETF URI, defaults",
			keys: []testKey{{serial: "000123456789", alg: securid, secret: aes16}},
			want: Result{Records: []Record{{Row: 1, Serial: "000123456789", Kind: KindHardware, Algorithm: AlgSecurID,
				Digits: 8, Interval: 60, Seed: aes16}}},
		},
		{
			name: "SecurID, WS-Trust URI, 6 digits, 30 s, DeviceInfo expiry",
			keys: []testKey{{serial: "000123456789", alg: securidWS, secret: aes16, length: "6", interval: "30",
				devExpiry: "2031-12-31T00:00:00Z"}},
			want: Result{Records: []Record{{Row: 1, Serial: "000123456789", Kind: KindHardware, Algorithm: AlgSecurID,
				Digits: 6, Interval: 30, ExpiresAt: date(2031, 12, 31), Seed: aes16}}},
		},
		{
			name: "TOTP, SHA-256, 60 s, time and drift, policy expiry wins",
			keys: []testKey{{serial: "111111111111", alg: totp, secret: sha20, suite: "HMAC-SHA256", length: "8",
				time: "0", interval: "60", drift: "-2", expiry: "2030-06-30T12:00:00+02:00", devExpiry: "2031-01-01T00:00:00Z"}},
			want: Result{Records: []Record{{Row: 1, Serial: "111111111111", Kind: KindHardware, Algorithm: AlgTOTP,
				Hash: HashSHA256, Digits: 8, Interval: 60, TimeDrift: -2,
				ExpiresAt: time.Date(2030, 6, 30, 10, 0, 0, 0, time.UTC), Seed: sha20}}},
		},
		{
			name: "TOTP defaults, SHA-512 suite, 64-byte secret",
			keys: []testKey{{serial: "111111111112", alg: totp, secret: sha64, suite: "SHA-512"}},
			want: Result{Records: []Record{{Row: 1, Serial: "111111111112", Kind: KindHardware, Algorithm: AlgTOTP,
				Hash: HashSHA512, Digits: 6, Interval: 30, Seed: sha64}}},
		},
		{
			name: "HOTP counter, interval ignored",
			keys: []testKey{{serial: "222222222222", alg: hotp, secret: sha20, counter: "42", interval: "45"}},
			want: Result{Records: []Record{{Row: 1, Serial: "222222222222", Kind: KindHardware, Algorithm: AlgHOTP,
				Hash: HashSHA1, Digits: 6, Counter: 42, Seed: sha20}}},
		},
		{
			name: "encrypted secret and counter",
			key:  rfcKey,
			keys: []testKey{{serial: "333333333333", alg: hotp, secret: sha20, encCount: &ten}},
			want: Result{Records: []Record{{Row: 1, Serial: "333333333333", Kind: KindHardware, Algorithm: AlgHOTP,
				Hash: HashSHA1, Digits: 6, Counter: 10, Seed: sha20}}},
		},
		{
			name: "every per-key problem, the good key still parses",
			keys: []testKey{
				{serial: "000000000001", alg: hotp, secret: sha20},
				{serial: "", alg: hotp, secret: sha20},
				{serial: "12345678901A", alg: hotp, secret: sha20},
				{serial: "000000000003", alg: "urn:ietf:params:xml:ns:keyprov:pskc:pin", secret: sha20},
				{serial: "000000000004", alg: "", secret: sha20},
				{serial: "000000000005", alg: hotp},
				{serial: "000000000006", alg: securid, secret: sha20},
				{serial: "000000000007", alg: hotp, secret: sha20[:15]},
				{serial: "000000000008", alg: hotp, secret: sha20, length: "7"},
				{serial: "000000000009", alg: hotp, secret: sha20, length: "8", encoding: "HEXADECIMAL"},
				{serial: "000000000010", alg: totp, secret: sha20, interval: "45"},
				{serial: "000000000011", alg: hotp, secret: sha20, counter: "-1"},
				{serial: "000000000012", alg: hotp, secret: sha20, expiry: "next year"},
				{serial: "000000000013", alg: totp, secret: sha20, suite: "MD5"},
				{serial: "000000000014", alg: hotp, secret: sha20, extraKey: true},
				{serial: "000000000001", alg: hotp, secret: sha20},
				{serial: "000000000015", alg: totp, secret: sha20, drift: "x", time: "y"},
			},
			want: Result{
				Records: []Record{{Row: 1, Serial: "000000000001", Kind: KindHardware, Algorithm: AlgHOTP,
					Hash: HashSHA1, Digits: 6, Seed: sha20}},
				Rejections: []Rejection{
					{2, "no DeviceInfo/SerialNo"},
					{3, `serial "12345678901A" is not 12 digits`},
					{4, `unsupported key algorithm "urn:ietf:params:xml:ns:keyprov:pskc:pin"`},
					{5, "key has no Algorithm"},
					{6, "no secret"},
					{7, "SecurID secret is 20 bytes, want 16"},
					{8, "OATH secret is 15 bytes, want 16 to 64"},
					{9, `response length "7" is not 6 or 8`},
					{10, `response encoding "HEXADECIMAL" is not DECIMAL`},
					{11, "time interval 45 is not 30 or 60"},
					{12, "Counter: not an unsigned integer"},
					{13, `expiry date "next year" is not an xs:dateTime`},
					{14, `unsupported suite "MD5"`},
					{15, "KeyPackage has 2 Key elements, want 1"},
					{16, "duplicate serial 000000000001, first in KeyPackage 1"},
					{17, "Time: not an integer; TimeDrift: not an integer"},
				},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := pskcDoc(tt.key, []byte("mac-key-for-tests-20"), tt.keys...)
			got, err := ParsePSKC(bytes.NewReader(doc), PSKCOptions{Key: tt.key})
			if err != nil {
				t.Fatalf("ParsePSKC: %v\n%s", err, doc)
			}
			if diff := cmp.Diff(&tt.want, got); diff != "" {
				t.Errorf("ParsePSKC (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPSKCBadOptions(t *testing.T) {
	_, err := ParsePSKC(bytes.NewReader(readTestdata(t, "rfc6030-figure2.xml")), PSKCOptions{Kind: "virtual"})
	if err == nil {
		t.Fatal("ParsePSKC accepted Kind \"virtual\"")
	}
}

func TestPSKCSinkError(t *testing.T) {
	stop := errors.New("stop")
	doc := edit(t, readTestdata(t, "rfc6030-figure10.xml"), ">654321<", ">000000654321<")
	var calls int
	err := DecodePSKC(bytes.NewReader(doc), PSKCOptions{}, Sink{
		Record: func(Record) error { calls++; return stop },
		Reject: func(Rejection) error { calls++; return nil },
	})
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("DecodePSKC = %v after %d calls, want stop after 1", err, calls)
	}
}

func TestPSKCGeneratedTestdata(t *testing.T) {
	aes16 := Seed("0123456789abcdef")
	sha20 := Seed("0123456789abcdefghij")
	tests := []struct {
		file string
		opts PSKCOptions
		want Result
	}{
		{"generated-plain.xml", PSKCOptions{}, Result{Records: []Record{
			{Row: 1, Serial: "000123456789", Kind: KindHardware, Algorithm: AlgSecurID, Digits: 8, Interval: 60, ExpiresAt: date(2030, 12, 31), Seed: aes16},
			{Row: 2, Serial: "000123456790", Kind: KindHardware, Algorithm: AlgTOTP, Hash: HashSHA256, Digits: 6, Interval: 30, TimeDrift: 1, Seed: sha20},
			{Row: 3, Serial: "000123456791", Kind: KindHardware, Algorithm: AlgHOTP, Hash: HashSHA1, Digits: 6, Counter: 5, Seed: sha20},
		}}},
		{"generated-psk.xml", PSKCOptions{Key: rfcKey}, Result{Records: []Record{
			{Row: 1, Serial: "000123456792", Kind: KindHardware, Algorithm: AlgSecurID, Digits: 8, Interval: 60, Seed: aes16},
			{Row: 2, Serial: "000123456793", Kind: KindHardware, Algorithm: AlgHOTP, Hash: HashSHA1, Digits: 6, Counter: 7, Seed: sha20},
		}}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := ParsePSKC(bytes.NewReader(readTestdata(t, tt.file)), tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(&tt.want, got); diff != "" {
				t.Errorf("ParsePSKC (-want +got):\n%s", diff)
			}
		})
	}
}

// decodeContainer decodes a whole container at once, for tests that look at
// the crypto of its first package.
func decodeContainer(data []byte) (*xContainer, error) {
	var c xContainer
	if err := xml.NewDecoder(bytes.NewReader(data)).Decode(&c); err != nil {
		return nil, err
	}
	return &c, nil
}
