package ctkip

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Namespaces and algorithm URIs exactly as RSA software uses them (docs/ctkip.md §5).
const (
	nsSOAP    = "http://schemas.xmlsoap.org/soap/envelope/"
	nsService = "http://ctkipservice.rsasecurity.com"
	nsCT11    = "http://www.rsasecurity.com/rsalabs/otps/schemas/2005/11/ct-kip#"
	nsCT12    = "http://www.rsasecurity.com/rsalabs/otps/schemas/2005/12/ct-kip#"
	nsDS      = "http://www.w3.org/2000/09/xmldsig#"
	nsXSI     = "http://www.w3.org/2001/XMLSchema-instance"
	nsXSD     = "http://www.w3.org/2001/XMLSchema"

	uriSecurIDAES = "http://www.rsasecurity.com/rsalabs/otps/schemas/2005/09/otps-wst#SecurID-AES"
	uriRSA15      = "http://www.w3.org/2001/04/xmlenc#rsa-1_5" // advertised; OAEP is what is used
	uriPRF11      = nsCT11 + "ct-kip-prf-aes"
	uriPRF12      = nsCT12 + "ct-kip-prf-aes"

	// DefaultServiceID is what RSA servers send in ServerFinished/ServiceID.
	DefaultServiceID = "RSA CT-KIP"
)

// Server message templates. Byte layout matters to the official clients
// (§4.4), so these are fixed strings with the variable parts spliced in,
// never encoding/xml output.
const (
	dsxsi = ` xmlns:ds="` + nsDS + `" xmlns:xsi="` + nsXSI + `"`

	helloHead = `<?xml version="1.0" encoding="UTF-8"?><ServerHello xmlns="` + nsCT12 + `"` + dsxsi + ` SessionID="`
	helloKey  = `" Status="Continue" Version="1.0"><KeyType xmlns="">` + uriSecurIDAES + "</KeyType>\n" +
		`<EncryptionAlgorithm xmlns="">` + uriRSA15 + "</EncryptionAlgorithm>\n" +
		`<EncryptionKey xmlns=""` + dsxsi + `><ds:KeyValue xmlns="` + nsCT12 + `"` + dsxsi + `><ds:RSAKeyValue xmlns="` + nsCT12 + `"` + dsxsi + `><ds:Modulus>`
	helloExp   = "</ds:Modulus>\n<ds:Exponent>"
	helloNonce = "</ds:Exponent>\n</ds:RSAKeyValue>\n</ds:KeyValue>\n</EncryptionKey>\n" +
		`<Payload xmlns=""` + dsxsi + `><Nonce xmlns="">`
	helloData = "</Nonce>\n</Payload>\n" +
		`<Extensions xmlns=""` + dsxsi + `><Extension xmlns:ct-kip="` + nsCT12 + `" xmlns=""` + dsxsi + `><Data>`
	helloTail = "</Data>\n</Extension>\n</Extensions>\n" +
		`<MacAlgorithm xmlns="">` + uriPRF11 + "</MacAlgorithm>\n</ServerHello>"

	finHead    = `<?xml version="1.0" encoding="UTF-8"?><ServerFinished xmlns="` + nsCT12 + `"` + dsxsi + ` SessionID="`
	finTokenID = `" Status="Success"><TokenID xmlns="">`
	finKeyID   = "</TokenID>\n<KeyID xmlns=\"\">"
	finExpiry  = "</KeyID>\n<KeyExpiryDate xmlns=\"\">"
	finService = "</KeyExpiryDate>\n<ServiceID xmlns=\"\">"
	finUser    = "</ServiceID>\n<UserID xmlns=\"\">"
	finLength  = "</UserID>\n" +
		`<Extensions xmlns=""` + dsxsi + `><Extension Critical="true" xmlns=""` + dsxsi + "><OTPFormat>Decimal</OTPFormat>\n<OTPLength>"
	finMode = "</OTPLength>\n" +
		`<OTPMode xmlns="` + nsCT12 + `"` + dsxsi + `><Time TimeInterval="`
	finMac = `" xmlns="` + nsCT12 + `"` + dsxsi + "/>\n</OTPMode>\n</Extension>\n</Extensions>\n" +
		`<Mac xmlns="" MacAlgorithm="` + uriPRF12 + `"` + dsxsi + `>`
	finTail = "</Mac>\n</ServerFinished>"

	// serverFinishedPD is the fixed ProvisioningData of the ServerFinished
	// response (§4.3): PIN type 0, PIN added to the tokencode.
	serverFinishedPD = "<?xml version=\"1.0\"?>\n<ProvisioningData>\n<PinType>0</PinType><AddPIN>1</AddPIN></ProvisioningData>\n"

	envHead = `<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
		`<soapenv:Envelope xmlns:soapenv="` + nsSOAP + `" xmlns:xsd="` + nsXSD + `" xmlns:xsi="` + nsXSI + `">` + "\n" +
		"  <soapenv:Body>\n"
	envTail   = "  </soapenv:Body>\n</soapenv:Envelope>"
	respHead  = `    <ServerResponse xmlns="` + nsService + `">` + "\n      <AuthData>"
	respPD    = "</AuthData>\n      <ProvisioningData>"
	respMsg   = "\n</ProvisioningData>\n      <Response>"
	respTail  = "\n</Response>\n    </ServerResponse>\n"
	faultHead = "    <soapenv:Fault>\n      <faultcode>soapenv:Server.userException</faultcode>\n      <faultstring>"
	faultTail = "</faultstring>\n    </soapenv:Fault>\n"

	faultPrefix = "java.rmi.RemoteException: The CT-KIP Web Service failed to process a client request."
	faultNested = "nested exception is:"
)

// Client message templates, as the reference client (and, per its author,
// the official Windows client) sends them (§5.1, §8.3).
const (
	clientPD    = `<?xml version="1.0"?><ProvisioningData><Version>5.0.2.440</Version><Manufacturer>RSA Security Inc.</Manufacturer><FormFactor/></ProvisioningData>`
	clientHello = `<ClientHello xmlns="` + nsCT11 + `" xmlns:xsd="` + nsXSD + `" xmlns:xsi="` + nsXSI + `" Version="1.0">` +
		`<SupportedKeyTypes xmlns=""><Algorithm xsi:type="xsd:anyURI">` + uriSecurIDAES + `</Algorithm></SupportedKeyTypes>` +
		`<SupportedEncryptionAlgorithms xmlns=""><Algorithm xsi:type="xsd:anyURI">` + uriRSA15 + `</Algorithm></SupportedEncryptionAlgorithms>` +
		`<SupportedMACAlgorithms xmlns=""><Algorithm xsi:type="xsd:anyURI">` + uriPRF11 + `</Algorithm></SupportedMACAlgorithms></ClientHello>`
	nonceHead = `<?xml version="1.0" encoding="UTF-8"?><ClientNonce xmlns="` + nsCT11 + `" Version="1.0" SessionID="`
	nonceEnc  = `"><EncryptedNonce xmlns="">`
	nonceData = "\n</EncryptedNonce>" + `<Extensions xmlns=""` + dsxsi + `><Extension xmlns="" xmlns:ct-kip="` + nsCT12 + `"` + dsxsi + `><Data>`
	nonceTail = "\n</Data></Extension></Extensions></ClientNonce>"

	creqHead = `<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
		`      <soapenv:Envelope xmlns:soapenv="` + nsSOAP + `" xmlns:xsd="` + nsXSD + `" xmlns:xsi="` + nsXSI + `">` + "\n" +
		"        <soapenv:Body>\n" +
		`          <ClientRequest xmlns="` + nsService + `">` + "\n" +
		"            <AuthData >"
	creqPD   = "</AuthData>\n            <ProvisioningData>"
	creqMsg  = "\n</ProvisioningData>\n            <Request>"
	creqTail = "\n</Request>\n          </ClientRequest>\n        </soapenv:Body>\n      </soapenv:Envelope>"
)

// appendEscaped appends s with XML escaping suitable for both text and
// attribute values. Invalid UTF-8 and characters XML cannot carry become U+FFFD.
func appendEscaped(dst []byte, s string) []byte { return appendEscapedMode(dst, s, true) }

// appendEscapedMode escapes s; in text mode (attr false) TAB and LF stay literal.
func appendEscapedMode(dst []byte, s string, attr bool) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '&':
				dst = append(dst, "&amp;"...)
			case c == '<':
				dst = append(dst, "&lt;"...)
			case c == '>':
				dst = append(dst, "&gt;"...)
			case c == '"':
				dst = append(dst, "&quot;"...)
			case c == '\'':
				dst = append(dst, "&apos;"...)
			case (c == '\t' || c == '\n') && !attr:
				dst = append(dst, c)
			case c == '\t':
				dst = append(dst, "&#x9;"...)
			case c == '\n':
				dst = append(dst, "&#xA;"...)
			case c == '\r':
				dst = append(dst, "&#xD;"...)
			case c < 0x20 || c == 0x7f:
				dst = append(dst, "\uFFFD"...)
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || r == 0xFFFE || r == 0xFFFF {
			dst = append(dst, "\uFFFD"...)
		} else {
			dst = append(dst, s[i:i+n]...)
		}
		i += n
	}
	return dst
}

// serverHello holds the variable parts of a ServerHello.
type serverHello struct {
	SessionID string
	Modulus   []byte // n.Bytes(): minimal, unsigned
	Exponent  []byte
	Nonce     [16]byte // R_S, sent in Payload/Nonce and Extensions/Extension/Data
}

func appendServerHello(dst []byte, h *serverHello) []byte {
	enc := base64.StdEncoding
	dst = append(dst, helloHead...)
	dst = appendEscaped(dst, h.SessionID)
	dst = append(dst, helloKey...)
	dst = enc.AppendEncode(dst, h.Modulus)
	dst = append(dst, helloExp...)
	dst = enc.AppendEncode(dst, h.Exponent)
	dst = append(dst, helloNonce...)
	dst = enc.AppendEncode(dst, h.Nonce[:])
	dst = append(dst, helloData...)
	dst = enc.AppendEncode(dst, h.Nonce[:])
	return append(dst, helloTail...)
}

// serverFinished holds the variable parts of a ServerFinished.
type serverFinished struct {
	SessionID string
	Serial    string
	ExpiresAt time.Time
	ServiceID string
	UserID    string
	Digits    int
	Interval  int
	MAC       [16]byte
}

// appendExpiry renders RSA's KeyExpiryDate: the UTC date at midnight with an
// explicit +00:00 offset.
func appendExpiry(dst []byte, t time.Time) []byte {
	dst = t.UTC().AppendFormat(dst, "2006-01-02")
	return append(dst, "T00:00:00+00:00"...)
}

func appendServerFinished(dst []byte, f *serverFinished) []byte {
	enc := base64.StdEncoding
	dst = append(dst, finHead...)
	dst = appendEscaped(dst, f.SessionID)
	dst = append(dst, finTokenID...)
	dst = enc.AppendEncode(dst, []byte(f.Serial))
	dst = append(dst, finKeyID...)
	dst = enc.AppendEncode(dst, []byte(f.Serial))
	dst = append(dst, finExpiry...)
	dst = appendExpiry(dst, f.ExpiresAt)
	dst = append(dst, finService...)
	dst = appendEscaped(dst, f.ServiceID)
	dst = append(dst, finUser...)
	dst = appendEscaped(dst, f.UserID)
	dst = append(dst, finLength...)
	dst = strconv.AppendInt(dst, int64(f.Digits), 10)
	dst = append(dst, finMode...)
	dst = strconv.AppendInt(dst, int64(f.Interval), 10)
	dst = append(dst, finMac...)
	dst = enc.AppendEncode(dst, f.MAC[:])
	return append(dst, finTail...)
}

// appendResponse wraps a CT-KIP message into the SOAP ServerResponse (§4.2).
func appendResponse(dst []byte, authData string, pd, msg []byte) []byte {
	enc := base64.StdEncoding
	dst = append(dst, envHead...)
	dst = append(dst, respHead...)
	dst = appendEscaped(dst, authData)
	dst = append(dst, respPD...)
	dst = enc.AppendEncode(dst, pd)
	dst = append(dst, respMsg...)
	dst = enc.AppendEncode(dst, msg)
	dst = append(dst, respTail...)
	return append(dst, envTail...)
}

// appendFault renders the Axis-style SOAP fault of §7.3. exception and message
// are fixed strings chosen by this package; they never carry request data.
func appendFault(dst []byte, exception, message string) []byte {
	dst = append(dst, envHead...)
	dst = append(dst, faultHead...)
	s := faultPrefix + " " + exception + ": " + message + ";" + faultNested + " \n\t" + exception + ": " + message
	dst = appendEscapedMode(dst, s, false)
	dst = append(dst, faultTail...)
	return append(dst, envTail...)
}

func appendClientRequest(dst []byte, code string, pd, msg []byte) []byte {
	enc := base64.StdEncoding
	dst = append(dst, creqHead...)
	dst = appendEscaped(dst, code)
	dst = append(dst, creqPD...)
	dst = enc.AppendEncode(dst, pd)
	dst = append(dst, creqMsg...)
	dst = enc.AppendEncode(dst, msg)
	return append(dst, creqTail...)
}

func appendClientNonce(dst []byte, sessionID string, encNonce, rs []byte) []byte {
	enc := base64.StdEncoding
	dst = append(dst, nonceHead...)
	dst = appendEscaped(dst, sessionID)
	dst = append(dst, nonceEnc...)
	dst = enc.AppendEncode(dst, encNonce)
	dst = append(dst, nonceData...)
	dst = enc.AppendEncode(dst, rs)
	return append(dst, nonceTail...)
}

// ---- parsing ----

var (
	errMalformed   = errors.New("ctkip: malformed message")
	errNamespace   = errors.New("ctkip: ClientRequest is not in the CT-KIP service namespace")
	errBase64      = errors.New("ctkip: invalid base64")
	errUnknownType = errors.New("ctkip: unknown CT-KIP message")
)

// decodeB64 strips all ASCII whitespace (clients put a LF inside every
// base64 element) and decodes standard, padded base64. The decoder skips CR
// and LF itself, so only other whitespace costs a copy.
func decodeB64(src []byte) ([]byte, error) {
	clean := src
	if bytes.ContainsAny(src, " \t\f\v") {
		clean = make([]byte, 0, len(src))
		for _, c := range src {
			switch c {
			case ' ', '\t', '\r', '\n', '\f', '\v':
			default:
				clean = append(clean, c)
			}
		}
	}
	out := make([]byte, base64.StdEncoding.DecodedLen(len(clean)))
	n, err := base64.StdEncoding.Decode(out, clean)
	if err != nil {
		return nil, errBase64
	}
	return out[:n], nil
}

// clientRequest is the outer SOAP layer of a device request.
// soapBody is the content of a ClientRequest or ServerResponse: both carry
// the activation code, ProvisioningData and a base64 inner message.
type soapBody struct {
	AuthData         string // trimmed
	ProvisioningData []byte // decoded, informational only
	Message          []byte // decoded inner CT-KIP document
}

type clientRequest = soapBody

// readSOAPBody decodes the children of a ClientRequest or ServerResponse node;
// msg names the element holding the inner message.
func readSOAPBody(d *xdoc, node int, msg string) (soapBody, error) {
	var r soapBody
	ad, pd, m := d.child(node, "AuthData"), d.child(node, "ProvisioningData"), d.child(node, msg)
	if ad < 0 || m < 0 {
		return r, errMalformed
	}
	r.AuthData = string(bytes.TrimSpace(d.text(ad)))
	var err error
	if pd >= 0 {
		if r.ProvisioningData, err = decodeB64(d.text(pd)); err != nil {
			return r, err
		}
	}
	if r.Message, err = decodeB64(d.text(m)); err != nil {
		return r, err
	}
	return r, nil
}

// parseClientRequest reads Envelope/Body/ClientRequest, matching by local
// name but requiring the CT-KIP service namespace on ClientRequest.
func parseClientRequest(d *xdoc, body []byte) (clientRequest, error) {
	var r clientRequest
	if err := d.parse(body); err != nil {
		return r, err
	}
	if d.local(0) != "Envelope" {
		return r, errMalformed
	}
	cr := d.path(0, "Body", "ClientRequest")
	if cr < 0 {
		return r, errMalformed
	}
	if string(d.nodes[cr].space) != nsService {
		return r, errNamespace
	}
	r, err := readSOAPBody(d, cr, "Request")
	if err != nil {
		return r, err
	}
	if len(r.Message) == 0 {
		return r, errMalformed
	}
	return r, nil
}

type messageKind int

const (
	kindClientHello messageKind = iota + 1
	kindClientNonce
)

// clientMessage is the inner CT-KIP message of a device request.
type clientMessage struct {
	Kind           messageKind
	SessionID      string // ClientNonce only
	EncryptedNonce []byte
	NonceEcho      []byte // Extensions/Extension/Data: R_S echoed back
}

// parseClientMessage recognises ClientHello and ClientNonce by local name and
// ignores everything the server does not need.
func parseClientMessage(d *xdoc, msg []byte) (clientMessage, error) {
	var m clientMessage
	if err := d.parse(msg); err != nil {
		return m, err
	}
	switch d.local(0) {
	case "ClientHello":
		m.Kind = kindClientHello
		return m, nil
	case "ClientNonce":
		m.Kind = kindClientNonce
	default:
		return m, errUnknownType
	}
	sid, ok := d.attr(0, "SessionID")
	if !ok || len(sid) == 0 {
		return m, errMalformed
	}
	m.SessionID = string(bytes.TrimSpace(sid))
	en := d.child(0, "EncryptedNonce")
	data := d.path(0, "Extensions", "Extension", "Data")
	if en < 0 || data < 0 {
		return m, errMalformed
	}
	var err error
	if m.EncryptedNonce, err = decodeB64(d.text(en)); err != nil {
		return m, err
	}
	if m.NonceEcho, err = decodeB64(d.text(data)); err != nil {
		return m, err
	}
	return m, nil
}

// FaultError is a SOAP fault returned by a CT-KIP server. For RSA-style faults
// Exception is the Java exception class and Message its message; otherwise
// Exception holds the faultcode and Message the faultstring.
type FaultError struct {
	Exception string
	Message   string
}

func (e *FaultError) Error() string {
	return "ctkip: server fault: " + e.Exception + ": " + e.Message
}

// parseFault extracts exception class and message as the reference client does.
func parseFault(code, s string) *FaultError {
	s = strings.TrimSpace(s)
	if code == "soapenv:Server.userException" && strings.HasPrefix(s, faultPrefix) {
		rest := strings.TrimSpace(s[len(faultPrefix):])
		if i := strings.Index(rest, faultNested); i >= 0 {
			rest = strings.TrimSpace(rest[i+len(faultNested):])
		}
		if exc, msg, ok := strings.Cut(rest, ": "); ok {
			return &FaultError{Exception: exc, Message: msg}
		}
	}
	return &FaultError{Exception: code, Message: s}
}

// serverResponse is the outer SOAP layer of a server answer.
type serverResponse = soapBody

// parseServerResponse reads a ServerResponse or a SOAP fault (*FaultError).
func parseServerResponse(d *xdoc, body []byte) (serverResponse, error) {
	var r serverResponse
	if err := d.parse(body); err != nil {
		return r, err
	}
	if d.local(0) != "Envelope" {
		return r, errMalformed
	}
	b := d.child(0, "Body")
	if f := d.child(b, "Fault"); f >= 0 {
		return r, parseFault(string(bytes.TrimSpace(d.text(d.child(f, "faultcode")))), string(d.text(d.child(f, "faultstring"))))
	}
	sr := d.child(b, "ServerResponse")
	if sr < 0 {
		return r, errMalformed
	}
	return readSOAPBody(d, sr, "Response")
}

// helloInfo is what a client needs from a ServerHello.
type helloInfo struct {
	SessionID string
	Modulus   []byte
	Exponent  []byte
	Nonce     []byte // R_S
}

// parseServerMessage parses a server message into d, checks that its root
// is want and that its Status, if any, is status, and returns its SessionID.
func parseServerMessage(d *xdoc, msg []byte, want, status string) (string, error) {
	if err := d.parse(msg); err != nil {
		return "", err
	}
	if d.local(0) != want {
		return "", errUnknownType
	}
	if st, ok := d.attr(0, "Status"); ok && string(bytes.TrimSpace(st)) != status {
		return "", errMalformed
	}
	sid, _ := d.attr(0, "SessionID")
	return string(bytes.TrimSpace(sid)), nil
}

func parseServerHello(d *xdoc, msg []byte) (helloInfo, error) {
	var h helloInfo
	var err error
	if h.SessionID, err = parseServerMessage(d, msg, "ServerHello", "Continue"); err != nil {
		return h, err
	}
	kv := d.path(0, "EncryptionKey", "KeyValue", "RSAKeyValue")
	mod, exp, nonce := d.child(kv, "Modulus"), d.child(kv, "Exponent"), d.path(0, "Payload", "Nonce")
	if h.SessionID == "" || mod < 0 || exp < 0 || nonce < 0 {
		return h, errMalformed
	}
	if h.Modulus, err = decodeB64(d.text(mod)); err != nil {
		return h, err
	}
	if h.Exponent, err = decodeB64(d.text(exp)); err != nil {
		return h, err
	}
	if h.Nonce, err = decodeB64(d.text(nonce)); err != nil {
		return h, err
	}
	if len(h.Nonce) != 16 {
		return h, errMalformed
	}
	// Official apps may read the copy in Extensions; if present it must agree.
	if data := d.path(0, "Extensions", "Extension", "Data"); data >= 0 {
		echo, err := decodeB64(d.text(data))
		if err != nil || !bytes.Equal(echo, h.Nonce) {
			return h, errMalformed
		}
	}
	return h, nil
}

// finishedInfo is what a client needs from a ServerFinished.
type finishedInfo struct {
	SessionID string
	Serial    string
	ExpiresAt time.Time
	ServiceID string
	UserID    string
	Digits    int
	Interval  int
	MAC       []byte
}

func parseServerFinished(d *xdoc, msg []byte) (finishedInfo, error) {
	var f finishedInfo
	var err error
	if f.SessionID, err = parseServerMessage(d, msg, "ServerFinished", "Success"); err != nil {
		return f, err
	}
	// The reference client takes the serial from KeyID; both must agree.
	keyID, tokenID, mac := d.child(0, "KeyID"), d.child(0, "TokenID"), d.child(0, "Mac")
	if keyID < 0 || mac < 0 {
		return f, errMalformed
	}
	serial, err := decodeB64(d.text(keyID))
	if err != nil {
		return f, err
	}
	if tokenID >= 0 {
		t, err := decodeB64(d.text(tokenID))
		if err != nil || !bytes.Equal(t, serial) {
			return f, errMalformed
		}
	}
	f.Serial = string(serial)
	if !validSerial(f.Serial) {
		return f, errMalformed
	}
	if f.MAC, err = decodeB64(d.text(mac)); err != nil {
		return f, err
	}
	if len(f.MAC) != 16 {
		return f, errMalformed
	}
	if e := d.child(0, "KeyExpiryDate"); e >= 0 {
		s := string(bytes.TrimSpace(d.text(e)))
		if f.ExpiresAt, err = time.Parse(time.RFC3339, s); err != nil {
			if f.ExpiresAt, err = time.Parse(time.DateOnly, s); err != nil {
				return f, errMalformed
			}
		}
	}
	f.ServiceID = string(bytes.TrimSpace(d.text(d.child(0, "ServiceID"))))
	f.UserID = string(bytes.TrimSpace(d.text(d.child(0, "UserID"))))
	// Defaults as in the reference client: 8 digits, 60 s; only the first
	// Extensions/Extension is read.
	f.Digits, f.Interval = 8, 60
	if ext := d.path(0, "Extensions", "Extension"); ext >= 0 {
		if l := d.child(ext, "OTPLength"); l >= 0 {
			if f.Digits, err = strconv.Atoi(string(bytes.TrimSpace(d.text(l)))); err != nil {
				return f, errMalformed
			}
		}
		if tm := d.path(ext, "OTPMode", "Time"); tm >= 0 {
			if v, ok := d.attr(tm, "TimeInterval"); ok {
				if f.Interval, err = strconv.Atoi(string(bytes.TrimSpace(v))); err != nil {
					return f, errMalformed
				}
			}
		}
	}
	if f.Digits < 1 || f.Digits > 8 || f.Interval <= 0 || f.Interval > 3600 {
		return f, errMalformed
	}
	return f, nil
}

// validSerial reports whether s is exactly 12 decimal digits.
func validSerial(s string) bool {
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
