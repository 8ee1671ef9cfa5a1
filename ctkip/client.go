package ctkip

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"time"
)

// Client provisions a token the way a device does (the reference client's
// headers and message layouts). The zero value uses http.DefaultClient and
// crypto/rand.
type Client struct {
	HTTP *http.Client
	Rand io.Reader
}

// Result is a provisioned token. Seed is secret.
type Result struct {
	Serial    string
	Seed      Seed
	Digits    int
	Interval  int // seconds
	ExpiresAt time.Time
	UserID    string
	ServiceID string
}

// Client-side errors. A server's SOAP fault is returned as *FaultError.
var (
	ErrBadResponse = errors.New("ctkip: malformed server response")
	ErrMACMismatch = errors.New("ctkip: ServerFinished MAC does not verify")
)

const maxResponseSize = 1 << 20

// Provision runs the two-POST exchange against url with an activation code and
// returns the token, after verifying the AuthData echo and the MAC.
func (c *Client) Provision(ctx context.Context, url, code string) (Result, error) {
	var res Result
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	rnd := c.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	var doc xdoc
	buf := make([]byte, 0, 4096)

	// POST #1: ClientHello.
	buf = appendClientRequest(buf[:0], code, []byte(clientPD), []byte(clientHello))
	resp1, err := c.post(ctx, hc, url, "StartService", code, buf, &doc)
	if err != nil {
		return res, err
	}
	hello, err := parseServerHello(&doc, resp1.Message)
	if err != nil {
		return res, fmt.Errorf("%w: ServerHello: %v", ErrBadResponse, err)
	}
	pub, err := publicKey(hello.Modulus, hello.Exponent)
	if err != nil {
		return res, err
	}

	// POST #2: ClientNonce with R_C under the server key (OAEP, whatever the URI says).
	var rc [16]byte
	if _, err := io.ReadFull(rnd, rc[:]); err != nil {
		return res, fmt.Errorf("ctkip: random: %w", err)
	}
	defer clear(rc[:])
	enc, err := rsa.EncryptOAEP(sha1.New(), rnd, pub, rc[:], nil)
	if err != nil {
		return res, fmt.Errorf("ctkip: encrypting client nonce: %w", err)
	}
	inner := appendClientNonce(make([]byte, 0, 1024), hello.SessionID, enc, hello.Nonce)
	buf = appendClientRequest(buf[:0], code, []byte(clientPD), inner)
	resp2, err := c.post(ctx, hc, url, "ServerFinished", code, buf, &doc)
	if err != nil {
		return res, err
	}
	fin, err := parseServerFinished(&doc, resp2.Message)
	if err != nil {
		return res, fmt.Errorf("%w: ServerFinished: %v", ErrBadResponse, err)
	}
	if fin.SessionID != "" && fin.SessionID != hello.SessionID {
		return res, fmt.Errorf("%w: SessionID changed", ErrBadResponse)
	}
	// The seed is derived from the modulus bytes exactly as received.
	seed, err := DeriveSeed(rc[:], hello.Modulus, hello.Nonce)
	if err != nil {
		return res, err
	}
	mac, err := ComputeMAC(seed, rc[:])
	if err != nil {
		return res, err
	}
	if subtle.ConstantTimeCompare(mac[:], fin.MAC) != 1 {
		return res, ErrMACMismatch
	}
	return Result{
		Serial:    fin.Serial,
		Seed:      seed,
		Digits:    fin.Digits,
		Interval:  fin.Interval,
		ExpiresAt: fin.ExpiresAt,
		UserID:    fin.UserID,
		ServiceID: fin.ServiceID,
	}, nil
}

// publicKey rebuilds the server key from ds:Modulus/ds:Exponent.
func publicKey(mod, exp []byte) (*rsa.PublicKey, error) {
	if len(mod) == 0 || len(mod) > 1024 || len(exp) == 0 || len(exp) > 4 {
		return nil, fmt.Errorf("%w: unusable RSA key", ErrBadResponse)
	}
	e := 0
	for _, b := range exp {
		e = e<<8 | int(b)
	}
	if e < 3 || e&1 == 0 {
		return nil, fmt.Errorf("%w: unusable RSA exponent", ErrBadResponse)
	}
	return &rsa.PublicKey{N: new(big.Int).SetBytes(mod), E: e}, nil
}

// post sends one ClientRequest and parses the SOAP response (faults included).
func (c *Client) post(ctx context.Context, hc *http.Client, url, action, code string, body []byte, doc *xdoc) (serverResponse, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return serverResponse{}, err
	}
	req.Header.Set("Content-Type", contentTypeCTKIP)
	req.Header.Set("SOAPAction", action)
	req.Header.Set("Authorization", code)
	req.Header.Set("User-Agent", "HTTPPOST")
	resp, err := hc.Do(req)
	if err != nil {
		return serverResponse{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseSize+1))
	if err != nil {
		return serverResponse{}, err
	}
	if len(data) > maxResponseSize {
		return serverResponse{}, fmt.Errorf("%w: response too large", ErrBadResponse)
	}
	// Axis-style servers send faults with 500; parse the body either way.
	sr, perr := parseServerResponse(doc, data)
	var fe *FaultError
	if errors.As(perr, &fe) {
		return sr, fe
	}
	if resp.StatusCode != http.StatusOK {
		return sr, fmt.Errorf("ctkip: HTTP status %d", resp.StatusCode)
	}
	if perr != nil {
		return sr, fmt.Errorf("%w: %v", ErrBadResponse, perr)
	}
	if subtle.ConstantTimeCompare([]byte(sr.AuthData), []byte(code)) != 1 {
		return sr, fmt.Errorf("%w: AuthData not echoed", ErrBadResponse)
	}
	return sr, nil
}
