package tokenfile

import (
	"bufio"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
)

// SDTIDHeader is what a written token file says for all its tokens.
type SDTIDHeader struct {
	// Password protects the file; empty means the key comes from Origin
	// and anyone holding the file holds the seeds.
	Password string
	Digits   int       // 6 | 8
	Interval int       // 30 | 60
	Expires  time.Time // the token stops at this instant's UTC day (written as Death, the day before)
	PINMode  string    // PINModeNone | PINModePINPad | PINModeFob
	Birth    time.Time // issue date
	// Rand supplies the batch secret.
	Rand io.Reader
}

// SDTIDToken is one token of a written file.
type SDTIDToken struct {
	Serial string // 12 digits
	Seed   []byte // 16 bytes
}

// SDTIDWriter writes an RSA token record file (the .sdtid format RSA's
// apps and stoken import), one token at a time.
type SDTIDWriter struct {
	w    *bufio.Writer
	keys *sdtidKeys
	hdr  SDTIDHeader
	n    int
	err  error
}

const sdtidNA = "N/A"

// NewSDTIDWriter writes the header of a token file to w.
func NewSDTIDWriter(w io.Writer, h SDTIDHeader) (*SDTIDWriter, error) {
	if h.Digits != 6 && h.Digits != 8 {
		return nil, fmt.Errorf("tokenfile: %d digits (want 6 or 8)", h.Digits)
	}
	if h.Interval != 30 && h.Interval != 60 {
		return nil, fmt.Errorf("tokenfile: interval %d (want 30 or 60)", h.Interval)
	}
	if h.Rand == nil {
		return nil, errors.New("tokenfile: SDTIDHeader.Rand is nil")
	}
	secret := make([]byte, 16)
	if _, err := io.ReadFull(h.Rand, secret); err != nil {
		return nil, fmt.Errorf("tokenfile: batch secret: %w", err)
	}
	pass := h.Password
	if pass == "" {
		pass = sdtidNA // the Origin
	}
	k0 := sdtidFileKey(pass, sdtidNA, sdtidNA)
	keys := &sdtidKeys{batch: ecbLabel(k0, "Secret", sdtidNA, secret)}
	clear(k0)
	addPIN, localPIN := "0", "0"
	switch h.PINMode {
	case PINModePINPad:
		addPIN = "1"
	case PINModeNone:
		localPIN = "1"
	case PINModeFob:
	default:
		return nil, fmt.Errorf("tokenfile: PIN mode %q", h.PINMode)
	}
	death := h.Expires.UTC().Add(-24 * time.Hour)
	hdr := &xnode{name: "TKNHeader"}
	for _, kv := range [...][2]string{
		{"Version", "0"}, {"Origin", sdtidNA}, {"Dest", sdtidNA}, {"Name", sdtidNA},
		{"FirstToken", sdtidNA}, {"LastToken", sdtidNA}, {"NumTokens", "0"},
		{"Secret", base64.StdEncoding.EncodeToString(secret)},
		{"DefBirth", h.Birth.UTC().Format("2006/01/02")}, {"DefDeath", death.Format("2006/01/02")},
		{"DefDigits", strconv.Itoa(h.Digits)}, {"DefInterval", strconv.Itoa(h.Interval)},
		{"DefAlg", "1"}, {"DefMode", "0"}, {"DefPrecision", "2400"}, {"DefSmallWin", "630"},
		{"DefMediumWin", "4320"}, {"DefLargeWin", "4320"}, {"DefAddPIN", addPIN}, {"DefLocalPIN", localPIN},
		{"DefCopyProtection", "1"}, {"DefPinType", "0"}, {"DefKeypad", "1"}, {"DefProtLevel", "0"},
		{"DefRevision", "0"}, {"DefTimeDerivedSeeds", "1"}, {"DefAppDerivedSeeds", "0"},
		{"DefFormFactor", softwareFormFactor},
	} {
		hdr.kids = append(hdr.kids, &xnode{name: kv[0], text: []byte(kv[1])})
	}
	data, err := sectionHash(hdr)
	if err != nil {
		return nil, err
	}
	mac := cbcMAC(calcKey("BatchMAC", sdtidNA, keys.batch, sdtidBatchMACIV), sdtidBatchMACIV, data)
	hdr.kids = append(hdr.kids, &xnode{name: "HeaderMAC", text: []byte(base64.StdEncoding.EncodeToString(mac))})
	sw := &SDTIDWriter{w: bufio.NewWriter(w), keys: keys, hdr: h}
	sw.put("<?xml version=\"1.0\"?>\n<TKNBatch>\n")
	sw.section(hdr, "  ")
	return sw, sw.err
}

// Add writes one token.
func (sw *SDTIDWriter) Add(t SDTIDToken) error {
	if sw.err != nil {
		return sw.err
	}
	if !ValidSerial(t.Serial) {
		return fmt.Errorf("tokenfile: serial %s is not 12 digits", quote(t.Serial))
	}
	if len(t.Seed) != 16 {
		return fmt.Errorf("tokenfile: seed is %d bytes, want 16", len(t.Seed))
	}
	enc := ecbLabel(calcKey("TokenEncrypt", t.Serial, sw.keys.batch, sdtidTokenEncIV), t.Serial, "Seed", t.Seed)
	tkn := &xnode{name: "TKN", kids: []*xnode{
		{name: "SN", text: []byte(t.Serial)},
		{name: "Seed", text: []byte("=" + base64.StdEncoding.EncodeToString(enc))},
		{name: "UserFirstName", text: []byte(" ")},
		{name: "UserLastName", text: []byte(" ")},
		{name: "UserLogin", text: []byte(" ")},
		{name: "TokenAttributes", kids: []*xnode{
			{name: "DeviceSerialNumber", text: []byte(" ")},
			{name: "Nickname", text: []byte(" ")},
		}},
	}}
	data, err := sectionHash(tkn)
	if err != nil {
		return err
	}
	mac := cbcMAC(calcKey("TokenMAC", t.Serial, sw.keys.batch, sdtidTokenMACIV), sdtidTokenMACIV, data)
	tkn.kids = append(tkn.kids, &xnode{name: "TokenMAC", text: []byte(base64.StdEncoding.EncodeToString(mac))})
	sw.section(tkn, "  ")
	sw.n++
	return sw.err
}

// Close writes the trailer and flushes. The trailer's batch signature is
// left blank: RSA's importers and stoken do not check it.
func (sw *SDTIDWriter) Close() error {
	sw.keys.wipe()
	if sw.err != nil {
		return sw.err
	}
	sw.put("  <TKNTrailer>\n    <BatchSignature> </BatchSignature>\n    <BatchCertificate> </BatchCertificate>\n  </TKNTrailer>\n</TKNBatch>\n")
	if sw.err != nil {
		return sw.err
	}
	return sw.w.Flush()
}

func (sw *SDTIDWriter) put(s string) {
	if sw.err == nil {
		_, sw.err = sw.w.WriteString(s)
	}
}

func (sw *SDTIDWriter) section(n *xnode, indent string) {
	sw.put(indent + "<" + n.name + ">")
	if len(n.kids) == 0 {
		if sw.err == nil {
			sw.err = xml.EscapeText(sw.w, n.text)
		}
	} else {
		sw.put("\n")
		for _, k := range n.kids {
			sw.section(k, indent+"  ")
		}
		sw.put(indent)
	}
	sw.put("</" + n.name + ">\n")
}
