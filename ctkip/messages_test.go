package ctkip

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

func testKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "vector_b_key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(data)
	if blk == nil {
		t.Fatal("no PEM block")
	}
	k, err := x509.ParsePKCS1PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func encryptOAEP(t testing.TB, pub *rsa.PublicKey, pt []byte) []byte {
	t.Helper()
	ct, err := rsa.EncryptOAEP(sha1.New(), rand.Reader, pub, pt, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ct
}

func encryptPKCS1v15(t testing.TB, pub *rsa.PublicKey, pt []byte) []byte {
	t.Helper()
	ct, err := rsa.EncryptPKCS1v15(rand.Reader, pub, pt)
	if err != nil {
		t.Fatal(err)
	}
	return ct
}

// golden compares got with testdata/name, rewriting it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", name, diff)
	}
}

// Vector B inputs (docs/ctkip.md §8.2).
const (
	vbSessionID = "8f0e1d2c3b4a59687766554433221100ff-AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1NjcA"
	vbRS        = "00112233445566778899aabbccddeeff"
	vbRC        = "0123456789abcdeffedcba9876543210"
	vbEncNonce  = "F6rvMJhZEWKUw/PiYD4KBDdzJXrpcHVU2go8GtgAxQ6gbye1cFih3a1CQL7E47EK6RPpnRJ7tsKfCj4lfdBF5Ce8hWVdyVU+haATNOHQ1Fe6T2fTg9WrGzjNyRRuXJeqvladjhMi/Cmo6eXGiGSAzu25IIZqkkpu01+NOiTJb64="
	vbKToken    = "f445522089a5e694001ca7b4c9238a7e"
	vbMAC       = "8100216f91ce3f8751856fa08de7cc3b"
	vbModulus   = "x+S2hORnr9kHbVgeZL1+T1tvBsM7nc3Xc/E/auCPGHovCITJNq49zLPr8N8lXhfwwvEr1c05WkfA+be1AcwwJARLx4m3HSPpHnHEVIYX58yRc8eIifeTQNSYcS6xDUM+FvDIyoilQuOAOS46ON1gVA40ILjmJcdSGm+4tdJsclU="

	vbHelloSHA    = "ee1887502e12776ec6c64d4a57672fbcd46c1eda89132795d09b88c435ef36ba"
	vbFinishedSHA = "4db7c8340c82607bffb6b7f2a3bf3e9f0c17d3633f6c590040627827b7f6971c"
)

func vectorBMessages(t testing.TB) (hello, finished []byte) {
	key := testKey(t)
	var rs [16]byte
	copy(rs[:], unhex(t, vbRS))
	var mac [16]byte
	copy(mac[:], unhex(t, vbMAC))
	hello = appendServerHello(nil, &serverHello{SessionID: vbSessionID, Modulus: key.N.Bytes(), Exponent: big32(key.E), Nonce: rs})
	finished = appendServerFinished(nil, &serverFinished{
		SessionID: vbSessionID, Serial: "000123456789",
		ExpiresAt: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC),
		ServiceID: DefaultServiceID, UserID: "alice", Digits: 8, Interval: 60, MAC: mac,
	})
	return hello, finished
}

func TestVectorBGolden(t *testing.T) {
	hello, finished := vectorBMessages(t)
	tests := []struct {
		name, file, sha string
		got             []byte
		size            int
	}{
		{"ServerHello", "server_hello.xml", vbHelloSHA, hello, 2047},
		{"ServerFinished", "server_finished.xml", vbFinishedSHA, finished, 1579},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			golden(t, tt.file, tt.got)
			sum := sha256.Sum256(tt.got)
			if h := hex.EncodeToString(sum[:]); h != tt.sha {
				t.Errorf("SHA-256 = %s, want %s (the documented golden)", h, tt.sha)
			}
			if len(tt.got) != tt.size {
				t.Errorf("size = %d, want %d", len(tt.got), tt.size)
			}
		})
	}
}

func TestVectorBCrypto(t *testing.T) {
	key := testKey(t)
	if got := base64.StdEncoding.EncodeToString(key.N.Bytes()); got != vbModulus {
		t.Fatalf("modulus = %s", got)
	}
	ct, err := base64.StdEncoding.DecodeString(vbEncNonce)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := DecryptNonce(key, ct)
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(rc[:]); got != vbRC {
		t.Fatalf("R_C = %s", got)
	}
	if _, err := rsa.DecryptPKCS1v15(nil, key, ct); err == nil {
		t.Error("vector B ciphertext also decrypts as PKCS#1 v1.5")
	}
	seed, err := DeriveSeed(rc[:], key.N.Bytes(), unhex(t, vbRS))
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(seed[:]); got != vbKToken {
		t.Errorf("K_TOKEN = %s", got)
	}
	mac, err := ComputeMAC(seed, rc[:])
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(mac[:]); got != vbMAC {
		t.Errorf("MAC = %s", got)
	}
}

// The envelopes and faults are ours (only their shape is prescribed), so they
// are pinned by golden files regenerated with -update.
func TestEnvelopeGolden(t *testing.T) {
	hello, finished := vectorBMessages(t)
	tests := []struct {
		name string
		got  []byte
	}{
		{"hello_response.xml", appendResponse(nil, "123456789012", []byte(clientPD), hello)},
		{"finished_response.xml", appendResponse(nil, "123456789012", []byte(serverFinishedPD), finished)},
		{"fault_invalid_code.xml", appendFault(nil, excPrivilege, msgInvalidCode)},
		{"client_hello_request.xml", appendClientRequest(nil, "123456789012", []byte(clientPD), []byte(clientHello))},
		{"client_nonce_request.xml", appendClientRequest(nil, "123456789012", []byte(clientPD),
			appendClientNonce(nil, vbSessionID, mustB64(t, vbEncNonce), unhex(t, vbRS)))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { golden(t, tt.name, tt.got) })
	}
}

func mustB64(t testing.TB, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFinishedPDBase64(t *testing.T) {
	const want = "PD94bWwgdmVyc2lvbj0iMS4wIj8+CjxQcm92aXNpb25pbmdEYXRhPgo8UGluVHlwZT4wPC9QaW5UeXBlPjxBZGRQSU4+MTwvQWRkUElOPjwvUHJvdmlzaW9uaW5nRGF0YT4K"
	if got := base64.StdEncoding.EncodeToString([]byte(serverFinishedPD)); got != want {
		t.Errorf("PD = %s", got)
	}
}

func TestFaultTextShape(t *testing.T) {
	var d xdoc
	_, err := parseServerResponse(&d, appendFault(nil, excPrivilege, msgInvalidCode))
	want := &FaultError{Exception: excPrivilege, Message: msgInvalidCode}
	if diff := cmp.Diff(want, err); diff != "" {
		t.Errorf("fault (-want +got):\n%s", diff)
	}
	// The literal faultstring the fake server sends (described as RSA's).
	const rsaFault = "java.rmi.RemoteException: The CT-KIP Web Service failed to process a client request. com.rsa.command.exception.InsufficientPrivilegeException: Invalid authorization code.;nested exception is: \n\tcom.rsa.command.exception.InsufficientPrivilegeException: Invalid authorization code."
	body := appendFault(nil, excPrivilege, msgInvalidCode)
	if !bytes.Contains(body, []byte("<faultstring>"+rsaFault+"</faultstring>")) {
		t.Errorf("fault body does not carry RSA's faultstring:\n%s", body)
	}
}

func TestParseClientMessages(t *testing.T) {
	var d xdoc
	body := appendClientRequest(nil, " 123456789012 ", []byte(clientPD), []byte(clientHello))
	req, err := parseClientRequest(&d, body)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(clientRequest{AuthData: "123456789012", ProvisioningData: []byte(clientPD), Message: []byte(clientHello)}, req); diff != "" {
		t.Errorf("request (-want +got):\n%s", diff)
	}
	m, err := parseClientMessage(&d, req.Message)
	if err != nil || m.Kind != kindClientHello {
		t.Fatalf("ClientHello: %+v, %v", m, err)
	}
	enc := mustB64(t, vbEncNonce)
	nonce := appendClientNonce(nil, vbSessionID, enc, unhex(t, vbRS))
	m, err = parseClientMessage(&d, nonce)
	if err != nil {
		t.Fatal(err)
	}
	want := clientMessage{Kind: kindClientNonce, SessionID: vbSessionID, EncryptedNonce: enc, NonceEcho: unhex(t, vbRS)}
	if diff := cmp.Diff(want, m); diff != "" {
		t.Errorf("ClientNonce (-want +got):\n%s", diff)
	}
	// Liberal reading: other prefixes, odd whitespace, CDATA, entities.
	liberal := "<?xml version='1.0'?>\n<!-- hi --><e:Envelope xmlns:e='" + nsSOAP + "'><e:Body >" +
		"<c:ClientRequest xmlns:c=\"" + nsService + "\"><c:AuthData>\n 12&#51;\n</c:AuthData>" +
		"<c:Request><![CDATA[" + base64.StdEncoding.EncodeToString([]byte(clientHello))[:10] + "]]>" +
		base64.StdEncoding.EncodeToString([]byte(clientHello))[10:] + "\n \t</c:Request></c:ClientRequest></e:Body></e:Envelope>\n"
	req, err = parseClientRequest(&d, []byte(liberal))
	if err != nil {
		t.Fatal(err)
	}
	if req.AuthData != "123" || string(req.Message) != clientHello {
		t.Errorf("liberal request = %+v", req)
	}
}

func TestParseServerMessages(t *testing.T) {
	hello, finished := vectorBMessages(t)
	var d xdoc
	h, err := parseServerHello(&d, hello)
	if err != nil {
		t.Fatal(err)
	}
	key := testKey(t)
	want := helloInfo{SessionID: vbSessionID, Modulus: key.N.Bytes(), Exponent: []byte{1, 0, 1}, Nonce: unhex(t, vbRS)}
	if diff := cmp.Diff(want, h); diff != "" {
		t.Errorf("ServerHello (-want +got):\n%s", diff)
	}
	f, err := parseServerFinished(&d, finished)
	if err != nil {
		t.Fatal(err)
	}
	wantF := finishedInfo{SessionID: vbSessionID, Serial: "000123456789", ExpiresAt: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC),
		ServiceID: "RSA CT-KIP", UserID: "alice", Digits: 8, Interval: 60, MAC: unhex(t, vbMAC)}
	if diff := cmp.Diff(wantF, f, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
		t.Errorf("ServerFinished (-want +got):\n%s", diff)
	}
}

func TestXMLRefusals(t *testing.T) {
	tests := []struct{ name, doc string }{
		{"doctype", `<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>`},
		{"lowercase doctype", `<!doctype a><a/>`},
		{"entity only", `<a><!ENTITY x "y"></a>`},
		{"undeclared entity", `<a>&x;</a>`},
		{"unclosed", `<a><b></a>`},
		{"two roots", `<a/><b/>`},
		{"text outside", `x<a/>`},
		{"unbound prefix", `<p:a/>`},
		{"empty", ``},
		{"bad attribute", `<a b=c/>`},
		{"lt in attribute", `<a b="<"/>`},
		{"deep", string(bytes.Repeat([]byte("<a>"), maxXMLDepth+1))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d xdoc
			if err := d.parse([]byte(tt.doc)); err == nil {
				t.Error("parse accepted it")
			}
		})
	}
}

func readTestdata(name string) ([]byte, error) {
	return os.ReadFile(filepath.Join("testdata", name))
}
