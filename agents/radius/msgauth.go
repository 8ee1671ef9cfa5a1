package radius

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/subtle"
	"encoding/binary"
	"errors"

	"layeh.com/radius"
)

// typeMessageAuthenticator is RFC 3579's Message-Authenticator (80).
const typeMessageAuthenticator radius.Type = 80

// Decoding errors. The server drops such packets silently.
var (
	errMalformed = errors.New("radius: malformed packet")
	errBadMA     = errors.New("radius: bad Message-Authenticator")
)

// messageAuthenticatorOffset returns where the value of the
// Message-Authenticator attribute starts in a wire packet, or -1 if there is
// none; errMalformed if the attributes do not parse or there are several.
func messageAuthenticatorOffset(b []byte) (int, error) {
	if len(b) < 20 {
		return -1, errMalformed
	}
	off := -1
	for i := 20; i < len(b); {
		if i+2 > len(b) {
			return -1, errMalformed
		}
		l := int(b[i+1])
		if l < 2 || i+l > len(b) {
			return -1, errMalformed
		}
		if radius.Type(b[i]) == typeMessageAuthenticator {
			if l != 18 || off >= 0 {
				return -1, errMalformed
			}
			off = i + 2
		}
		i += l
	}
	return off, nil
}

// messageAuthenticator is HMAC-MD5 over the packet with the
// Message-Authenticator's value zeroed (RFC 3579 §3.2); b is modified.
func messageAuthenticator(b []byte, off int, secret []byte) []byte {
	clear(b[off : off+16])
	m := hmac.New(md5.New, secret)
	m.Write(b)
	return m.Sum(nil)
}

// checkRequestMA verifies a request's Message-Authenticator. It reports
// whether the packet carries one; a wrong one is errBadMA.
func checkRequestMA(raw, secret []byte) (bool, error) {
	off, err := messageAuthenticatorOffset(raw)
	if err != nil || off < 0 {
		return false, err
	}
	// The HMAC runs over a copy (it zeroes the value); raw keeps the one sent.
	b := append([]byte(nil), raw...)
	if subtle.ConstantTimeCompare(messageAuthenticator(b, off, secret), raw[off:off+16]) != 1 {
		return true, errBadMA
	}
	return true, nil
}

// encodeResponse encodes resp (a response to a request with authenticator
// reqAuth) with a Message-Authenticator as its first attribute and the
// Response Authenticator, as BlastRADIUS mitigations require of servers.
func encodeResponse(resp *radius.Packet, reqAuth [16]byte) ([]byte, error) {
	attrs := make(radius.Attributes, 0, len(resp.Attributes)+1)
	attrs = append(attrs, &radius.AVP{Type: typeMessageAuthenticator, Attribute: make(radius.Attribute, 16)})
	for _, a := range resp.Attributes {
		if a.Type != typeMessageAuthenticator {
			attrs = append(attrs, a)
		}
	}
	resp.Attributes = attrs
	resp.Authenticator = reqAuth
	b, err := resp.MarshalBinary()
	if err != nil {
		return nil, err
	}
	copy(b[22:38], messageAuthenticator(b, 22, resp.Secret))
	h := md5.New()
	h.Write(b)
	h.Write(resp.Secret)
	copy(b[4:20], h.Sum(nil))
	return b, nil
}

// AddMessageAuthenticator gives an Access-Request a Message-Authenticator
// (as its first attribute), for clients: layeh.com/radius does not add one.
// Set every other attribute first; the User-Password must already be
// hidden with p's Authenticator.
func AddMessageAuthenticator(p *radius.Packet) error {
	p.Attributes.Del(typeMessageAuthenticator)
	p.Attributes = append(radius.Attributes{{Type: typeMessageAuthenticator, Attribute: make(radius.Attribute, 16)}}, p.Attributes...)
	b, err := p.MarshalBinary()
	if err != nil {
		return err
	}
	copy(p.Attributes[0].Attribute, messageAuthenticator(b, 22, p.Secret))
	return nil
}

// ResponseMessageAuthenticatorFirst reports whether a response (as a
// layeh.com/radius client parsed it) carries a valid Message-Authenticator
// as its first attribute; reqAuth is the request's authenticator.
func ResponseMessageAuthenticatorFirst(resp *radius.Packet, reqAuth [16]byte) bool {
	if len(resp.Attributes) == 0 || resp.Attributes[0].Type != typeMessageAuthenticator || len(resp.Attributes[0].Attribute) != 16 {
		return false
	}
	q := *resp
	q.Authenticator = reqAuth
	b, err := q.MarshalBinary()
	if err != nil || binary.BigEndian.Uint16(b[2:4]) != uint16(len(b)) {
		return false
	}
	want := append([]byte(nil), b[22:38]...)
	return hmac.Equal(messageAuthenticator(b, 22, resp.Secret), want)
}
